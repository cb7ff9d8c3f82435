"""Bounded fuzzing of the file parsers in CI (tests/fuzz/fuzz_parsers.py holds the harness).

A few hundred mutated inputs per target here (a few seconds); set CNNFAST_FUZZ_EXAMPLES for a
longer run, e.g. ``CNNFAST_FUZZ_EXAMPLES=100000 pytest -q tests/test_fuzz.py``. The C++ reader
runs in a child process, so a crash fails the test (and leaves the input in current.bin)
instead of killing pytest.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("hypothesis")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "fuzz"))
import fuzz_parsers
from counts import record

import cnnfast

PACKAGE = pathlib.Path(cnnfast.__file__).resolve().parent
HARNESS = pathlib.Path(__file__).resolve().parent / "fuzz" / "fuzz_parsers.py"


@pytest.mark.parametrize("target, default", [("model_py", 200), ("idx", 400), ("cifar", 200)])
def test_fuzz_python_parsers(tmp_path, target, default):
    n = fuzz_parsers.examples(default)
    ran = fuzz_parsers.run(target, n, tmp_path)
    assert ran >= min(n, 50)
    record("fuzz iterations (Python parsers)", ran)


def test_fuzz_c_model_reader_in_a_child_process(tmp_path):
    lib = PACKAGE / "lib" / "libcnnfast.so"
    if not lib.exists():
        pytest.skip(f"{lib} not built (./dev/build.sh)")
    n = fuzz_parsers.examples(400)
    env = dict(os.environ, CNNFAST_FUZZ_EXAMPLES=str(n), CNNFAST_FUZZ_DIR=str(tmp_path),
               PYTHONPATH=os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(HARNESS), "model_c"], env=env, check=False,
                          capture_output=True, text=True, timeout=max(300, n / 20))
    crash = tmp_path / "current.bin"
    assert proc.returncode == 0, (
        f"C model reader fuzz failed (exit {proc.returncode}); last input in {crash}:\n"
        f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    ran = int(proc.stdout.split("fuzz model_c: ")[1].split()[0])
    assert ran >= min(n, 50)
    record("fuzz iterations (C++ model reader)", ran)
