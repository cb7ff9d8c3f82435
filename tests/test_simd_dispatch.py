"""CNNFAST_SIMD caps the instruction set of every kernel family at once (cpu_features.h)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

import cnnfast
from cnnfast import _core

CHILD = """
import json
from cnnfast import _core
print(json.dumps([_core.sgemm_simd_path(), _core.elementwise_simd_path(),
                  _core.pool2d_simd_path(), _core.conv2d_algorithm()]))
"""


def _paths(cap: str | None) -> list[str]:
    env = dict(os.environ)
    env.pop("CNNFAST_SIMD", None)
    if cap is not None:
        env["CNNFAST_SIMD"] = cap
    package_root = pathlib.Path(cnnfast.__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(package_root), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                         check=True, cwd=package_root)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_scalar_cap_reaches_every_family():
    gemm, elementwise, pool, conv = _paths("scalar")
    assert gemm == "scalar" and elementwise == "baseline" and pool == "baseline"
    assert conv == "im2col"  # the direct convolution needs AVX-512


@pytest.mark.skipif(_core.sgemm_simd_path() == "scalar", reason="CPU without AVX2")
def test_avx2_cap_reaches_every_family():
    gemm, elementwise, pool, _ = _paths("avx2")
    assert gemm == elementwise == pool == "avx2"


@pytest.mark.parametrize("cap", ["scalar", "avx2"])
def test_mixed_precision_runs_on_the_portable_kernels(cap):
    """compile(precision="bfloat16") on a CPU without AVX512-BF16 (or AVX-512): the portable
    bfloat16 GEMM and im2col everywhere; tests/test_mixed_precision.py checks the numbers."""
    if cap == "avx2" and _core.sgemm_simd_path() == "scalar":
        pytest.skip("CPU without AVX2")
    env = dict(os.environ, CNNFAST_SIMD=cap)
    package_root = pathlib.Path(cnnfast.__file__).resolve().parents[1]
    tests = pathlib.Path(__file__).resolve().parent
    env["PYTHONPATH"] = os.pathsep.join([str(package_root), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tests / "test_mixed_precision.py"), "-k", "not avx512"],
                          env=env, capture_output=True, text=True, check=False,
                          cwd=package_root, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def test_default_is_the_same_level_everywhere():
    gemm, elementwise, pool, _ = _paths(None)
    assert gemm == elementwise.replace("baseline", "scalar") == pool.replace("baseline", "scalar")


def test_show_config_reports_every_family_and_the_real_flags(capsys):
    cnnfast.show_config()
    out = capsys.readouterr().out.splitlines()[1:]
    lines = {key.strip(): value.strip() for key, value in (line.split(":", 1) for line in out)}
    assert lines["SIMD path (GEMM)"] == _core.sgemm_simd_path()
    assert lines["SIMD path (elementwise)"] == _core.elementwise_simd_path()
    assert lines["SIMD path (pooling)"] == _core.pool2d_simd_path()
    assert lines["bfloat16 GEMM path"] == _core.sgemm_bf16_path()
    assert lines["int8 GEMM path"] == _core.gemm_u8s8_path()  # cnnfast.quantize's products
    assert lines["threads"] == str(_core.get_num_threads())
    flags = lines["build flags"]
    # The kernels' own flags, each once, and an ISA kernel set whenever its path can run.
    assert "-fno-math-errno" in flags and flags.split(",")[0].split().count("-O3") == 1
    if _core.sgemm_simd_path() == "avx512":
        assert "avx512 kernels: -mavx512f" in flags
    if _core.sgemm_simd_path() in ("avx512", "avx2"):
        assert "avx2 kernels: -mavx2 -mfma" in flags
