"""The bench stops at the start, in one line naming the `bench` extra, when a prerequisite is
missing (issue 23: without threadpoolctl NumPy's 1-thread rows ran on every core and the
isolated GEMM section crashed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Runs `python -m bench <section>` with threadpoolctl unimportable (a None entry in sys.modules
# makes `import threadpoolctl` raise ImportError).
HIDDEN = """
import runpy, sys
sys.modules["threadpoolctl"] = None
sys.argv = ["bench", *sys.argv[1:]]
runpy.run_module("bench", run_name="__main__")
"""


@pytest.mark.skipif(not (ROOT / "bench" / "__main__.py").exists(),
                    reason="the bench scripts are not in this checkout")
@pytest.mark.parametrize("section", ["gemm", "gemm-isolated", "train"])
def test_bench_without_threadpoolctl_stops_with_one_line(section, tmp_path):
    proc = subprocess.run([sys.executable, "-c", HIDDEN, section, "--no-write"], cwd=tmp_path,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""  # nothing ran: not even the environment lines
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    # "threadpoolctl" or "threadpoolctl, torch" where torch is absent too.
    assert lines[0].startswith("bench: threadpoolctl")
    assert lines[0].endswith("not installed; install the bench extra: pip install '.[bench]'")
