"""The benchmark runs: `python -m bench --quick` exits 0 and writes its report (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import clean_env

REPO = Path(__file__).resolve().parents[1]


def test_quick_bench_runs_and_writes_a_table(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    r = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out), "--work", str(tmp_path / "work")],
                       env=clean_env({"HOME": str(tmp_path / "home")}), cwd=REPO, capture_output=True, text=True,
                       timeout=600, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-4000:]
    text = out.read_text()
    assert text.startswith("# Benchmarks") and "cores" in text and "py-rattler" in text
    assert "| run | median | min | max |" in text
    for case in ("## 1.", "## 2.", "## 6.", "## 7.", "## 9.", "## 10.", "## 11.", "## 13."):
        assert case in text, case
    assert "FAILED" not in text
    assert not (tmp_path / "work").exists()          # the work folder is removed
