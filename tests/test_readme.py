"""The README's quick start runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quick_start_runs_and_fits(capsys):
    text = README.read_text()
    section = text.split("## Quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README quick start", "exec"), namespace)
    result = namespace["result"]
    assert result.stop.converged
    assert max(result.relerr.values()) < 1e-6
    assert (namespace["B_hat"] >= 0).all()
    assert "Model: 2 terms, 4 variables" in capsys.readouterr().out
