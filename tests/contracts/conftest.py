"""The contract suites reuse the autograd references of ``tests/sdf/terms/_reference.py``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdf" / "terms"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdf" / "transforms"))
