"""Each example script run once per test session, shared by the tests of the examples and
the docs build (a module of its own: ``conftest`` is not importable by name, several
directories of the suite have one)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE_TIMEOUT = 180  # seconds; each script is meant to finish in < 60 s on 2 cores


@dataclass(frozen=True)
class ExampleRun:
    """One run of ``examples/NAME.py`` as a user runs it: the finished process, the time
    it started and what it left in its (empty, temporary) working directory."""

    proc: subprocess.CompletedProcess
    start: float
    left: list[str]


class ExampleRuns:
    """Each example script run at most once per test session, in a subprocess from an
    empty working directory with matplotlib's Agg backend; a successful run's report is
    also written to ``reports / NAME.txt``, where the docs build takes it instead of
    running the script again (``SDF_DOCS_RUNS``, see ``docs/_ext/sdf_docs.py``)."""

    def __init__(self, root: Path) -> None:
        self.reports = root / "reports"
        self.reports.mkdir()
        self._root = root
        self._runs: dict[str, ExampleRun] = {}

    def run(self, script: str) -> ExampleRun:
        if script not in self._runs:
            cwd = self._root / script.replace(".py", "")
            cwd.mkdir()
            env = {**os.environ, "MPLBACKEND": "Agg"}
            for name in ("SDF_DOCS_GALLERY", "SDF_DOCS_RUNS"):
                env.pop(name, None)
            start = time.time()
            proc = subprocess.run([sys.executable, str(EXAMPLES / script)], cwd=cwd, env=env,
                                  capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT)
            if proc.returncode == 0 and "Traceback" not in proc.stderr:
                (self.reports / script.replace(".py", ".txt")).write_text(
                    proc.stdout, encoding="utf-8")
            self._runs[script] = ExampleRun(proc, start, sorted(p.name for p in cwd.iterdir()))
        return self._runs[script]
