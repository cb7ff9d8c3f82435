"""sgemm against the float64 reference, over edge-heavy shapes, every flag and every SIMD path."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from reference import gemm as gemm_ref

import cnnfast
from cnnfast import _core

# fp32 rounding unit. The packed kernels sum over K in a blocked order that differs from the
# reference's, so the check is the worst-case forward error bound of an fp32 dot product rather
# than a guessed rtol: |fl(c) - c| <= gamma_{K+2} * (|alpha| |op(A)| |op(B)| + |beta| |C0|), with
# gamma_n ~= n * u (K products/sums, the alpha scaling and the beta update). It scales with each
# element's own magnitude, so it never flakes, yet a dropped or doubled k term (an error of one
# full |a_k b_k|) exceeds it by orders of magnitude for these K <= 800.
U32 = 2.0**-24

# (M, N, K): 1, primes, and sizes either side of the tiles of every path (avx512 14x32,
# avx2 6x16, scalar 4x8), of the K block (384, split evenly), of the packed-B width (a few
# hundred columns) and of the small-problem cut-off (M*N*K <= 4096).
# Transposed-A narrow path (trans_a, B not transposed, 16 <= N <= 128, M >= 12, A's row stride not
# a multiple of 128 floats; unpacked 6-row panels, 64-column blocks, K chunks of 64): partial
# panels, masked last vectors, two column blocks, K tails, both threads. These take the narrow
# route when trans_a and not trans_b (checked below).
TN_NARROW_SHAPES = [
    (12, 16, 40),
    (13, 17, 300),
    (37, 64, 600),
    (50, 65, 320),
    (100, 100, 700),
    (61, 128, 257),
    (600, 48, 1030),
]
SHAPES = [
    (1, 1, 1),
    (1, 7, 1),
    (2, 3, 5),
    (3, 1, 11),
    (16, 16, 16),
    (16, 16, 17),
    (13, 31, 9),
    (14, 32, 16),
    (15, 33, 17),
    (28, 64, 8),
    (29, 65, 3),
    (5, 15, 7),
    (6, 16, 8),
    (7, 17, 19),
    (4, 8, 130),
    (31, 37, 41),
    (97, 101, 103),
    (43, 47, 383),
    (42, 96, 384),
    (45, 33, 385),
    (17, 35, 769),
    (1, 300, 400),
    (300, 1, 400),
    (500, 3, 7),
    (20, 1100, 50),
    (257, 259, 261),
    (300, 70, 390),
    # More columns than one packed B block holds (on L2 caches up to 2.5 MiB), and more rows
    # than one A block: the packed A of the first column block is kept and reused by the later
    # ones, over three K blocks.
    (73, 2100, 800),
    # Small-M path (M <= 4 rows, B not transposed, unpacked): batch-1 dense layers and
    # whole-input convolutions; column blocks of 1-8 vectors with masked tails, K unrolled by U.
    (1, 120, 400),
    (2, 84, 120),
    (3, 10, 576),
    (4, 130, 65),
    (1, 1000, 17),
    (4, 257, 3),
] + TN_NARROW_SHAPES
FLAGS = [(False, False), (False, True), (True, False), (True, True)]
# (alpha, beta): exactly representable in fp32, so the reference sees the same values.
SCALES = [(1.0, 0.0), (-1.25, 0.5), (0.5, 1.0)]


def _operands(rng, m, n, k, trans_a, trans_b):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    return a, b, c0


def _bound(a, b, c0, k, trans_a, trans_b, alpha, beta):
    mag = gemm_ref(np.abs(a), np.abs(b), trans_a, trans_b, abs(alpha), abs(beta), np.abs(c0))
    return (k + 2) * U32 * mag + 1e-30


def check_case(m, n, k, trans_a, trans_b, alpha, beta, seed=0, **kw):
    """Run one sgemm and raise AssertionError unless it matches the reference within the bound."""
    rng = np.random.default_rng([m, n, k, int(trans_a), int(trans_b), seed])
    a, b, c0 = _operands(rng, m, n, k, trans_a, trans_b)
    ref = gemm_ref(a, b, trans_a, trans_b, alpha, beta, c0)
    # beta == 0 must not read C: fill it with NaN, which would poison any read.
    c = np.full_like(c0, np.nan) if beta == 0.0 else c0.copy()
    _core.sgemm(c, a, b, trans_a, trans_b, alpha, beta, **kw)
    err = np.abs(c.astype(np.float64) - ref)
    bound = _bound(a, b, c0, k, trans_a, trans_b, alpha, beta)
    if not np.all(err <= bound):
        i = np.unravel_index(np.argmax(np.nan_to_num(err / bound, nan=np.inf)), err.shape)
        raise AssertionError(
            f"sgemm {(m, n, k)} trans={(trans_a, trans_b)} alpha={alpha} beta={beta} "
            f"path={_core.sgemm_simd_path()}: at {i} got {c[i]}, want {ref[i]} (bound {bound[i]:.3g})"
        )


def all_cases():
    for shape in SHAPES:
        for flags in FLAGS:
            for scales in SCALES:
                yield (*shape, *flags, *scales)


@pytest.mark.parametrize("m,n,k", SHAPES)
@pytest.mark.parametrize("trans_a,trans_b", FLAGS)
@pytest.mark.parametrize("alpha,beta", SCALES)
def test_sgemm_matches_reference(m, n, k, trans_a, trans_b, alpha, beta):
    check_case(m, n, k, trans_a, trans_b, alpha, beta)


@pytest.mark.parametrize(
    "m,n,k", [(9, 40, 20), (300, 70, 390), (1, 33, 1000), (600, 48, 1030), (73, 2100, 800)]
)
@pytest.mark.parametrize("trans_a,trans_b", FLAGS)
def test_sgemm_single_thread_matches_reference(m, n, k, trans_a, trans_b):
    check_case(m, n, k, trans_a, trans_b, -1.25, 0.5, single_thread=True)


@pytest.mark.parametrize("m,n,k", [(3, 4, 5), (37, 29, 31)])
@pytest.mark.parametrize("trans_a,trans_b", FLAGS)
def test_sgemm_naive_matches_reference(m, n, k, trans_a, trans_b):
    check_case(m, n, k, trans_a, trans_b, 0.5, 1.0, naive=True)


@pytest.mark.parametrize("m,n,k", [(0, 5, 3), (5, 0, 3), (0, 0, 0), (4, 6, 0)])
@pytest.mark.parametrize("beta", [0.0, 2.0])
def test_sgemm_empty_dims(m, n, k, beta):
    # K == 0 means C = beta * C (exactly: no products are formed); M or N == 0 touches nothing.
    a = np.ones((m, k), np.float32)
    b = np.ones((k, n), np.float32)
    c0 = np.arange(m * n, dtype=np.float32).reshape(m, n)
    c = np.full_like(c0, np.nan) if beta == 0.0 else c0.copy()
    _core.sgemm(c, a, b, beta=beta)
    np.testing.assert_array_equal(c, beta * c0)


def test_sgemm_alpha_zero_scales_c_only():
    # alpha == 0: op(A) op(B) is not formed, so Inf in A cannot turn into NaN in C.
    a = np.full((20, 30), np.inf, np.float32)
    b = np.ones((30, 40), np.float32)
    c0 = np.ones((20, 40), np.float32)
    c = c0.copy()
    _core.sgemm(c, a, b, alpha=0.0, beta=3.0)
    np.testing.assert_array_equal(c, 3.0 * c0)


@pytest.mark.parametrize("m,n,k", [(5, 7, 3), (45, 70, 400), (300, 96, 130), (60, 2100, 400)])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_sgemm_bias_relu_epilogue(m, n, k, relu, with_bias):
    rng = np.random.default_rng(7)
    a, b, c0 = _operands(rng, m, n, k, False, False)
    bias = rng.standard_normal(n).astype(np.float32)
    ref = gemm_ref(a, b, alpha=0.5, beta=1.0, c=c0) + (bias if with_bias else 0.0)
    if relu:
        ref = np.maximum(ref, 0.0)
    c = c0.copy()
    _core.sgemm(c, a, b, alpha=0.5, beta=1.0, bias=bias if with_bias else None, relu=relu)
    # The product's bound as above; the bias add is one more fp32 rounding of |result| + |bias|.
    bound = _bound(a, b, c0, k, False, False, 0.5, 1.0) + 2 * U32 * (np.abs(ref) + np.abs(bias))
    assert np.all(np.abs(c - ref) <= bound)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_sgemm_small_m_epilogue_propagates_nan(m):
    # The small-M path's fused bias + ReLU: NaN inputs must survive the ReLU, negatives clamp.
    rng = np.random.default_rng(11)
    a, b, _ = _operands(rng, m, 70, 33, False, False)
    a[0, 5] = np.nan
    bias = rng.standard_normal(70).astype(np.float32)
    c = np.empty((m, 70), np.float32)
    _core.sgemm(c, a, b, bias=bias, relu=True)
    ref = np.maximum(gemm_ref(a, b) + bias, 0.0)
    assert np.all(np.isnan(c[0]))
    bound = _bound(a[1:], b, np.zeros((m - 1, 70), np.float32), 33, False, False, 1.0, 0.0) \
        + 2 * U32 * (np.abs(ref[1:]) + np.abs(bias))  # product bound plus the bias rounding
    assert np.all(np.abs(c[1:] - ref[1:]) <= bound)


def test_sgemm_routes_narrow_transposed_a_unpacked():
    # The reference comparisons above only test the narrow route if these shapes really take it.
    if _core.sgemm_simd_path() != "avx512":
        pytest.skip("the narrow route is AVX-512 only; this process runs "
                    + _core.sgemm_simd_path())
    for m, n, k in TN_NARROW_SHAPES:
        assert _core.sgemm_route(m, n, k, True, False) == "tn_narrow", (m, n, k)
        assert _core.sgemm_route(m, n, k, True, True) != "tn_narrow"
        assert _core.sgemm_route(m, n, k, False, False) != "tn_narrow"
    # Too few or too many columns, too few rows, or a row stride of 128 floats (L1 sets).
    for m, n, k in [(600, 8, 1030), (600, 129, 1030), (11, 64, 300), (1152, 64, 1030),
                    (256, 32, 512)]:
        assert _core.sgemm_route(m, n, k, True, False) == "packed", (m, n, k)
    for bad in [(-1, 4, 4), (2**40, 2**20, 2**10)]:
        with pytest.raises(ValueError, match="sgemm_route"):
            _core.sgemm_route(*bad)


@pytest.mark.parametrize("m,n,k", [(100, 100, 700), (37, 64, 600)])
def test_sgemm_tn_narrow_epilogue(m, n, k):
    # Bias and ReLU are applied by the narrow route's last K chunk only; NaN survives ReLU.
    rng = np.random.default_rng(13)
    a, b, c0 = _operands(rng, m, n, k, True, False)
    a[5, 7] = np.nan  # op(A)(7, 5): row 7 of C becomes NaN
    bias = rng.standard_normal(n).astype(np.float32)
    c = c0.copy()
    _core.sgemm(c, a, b, True, False, alpha=0.5, beta=1.0, bias=bias, relu=True)
    ref = np.maximum(gemm_ref(a, b, True, False, 0.5, 1.0, c0) + bias, 0.0)
    assert np.all(np.isnan(c[7]))
    keep = np.arange(m) != 7
    a_ok = a.copy()
    a_ok[5, 7] = 0.0
    # The product's bound as above; the bias add is one more fp32 rounding of |result| + |bias|.
    bound = _bound(a_ok, b, c0, k, True, False, 0.5, 1.0) + 2 * U32 * (np.abs(ref) + np.abs(bias))
    assert np.all(np.abs(c[keep] - ref[keep]) <= bound[keep])


def test_sgemm_rejects_bad_shapes():
    c = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="inner dimensions"):
        _core.sgemm(c, np.zeros((3, 5), np.float32), np.zeros((6, 4), np.float32))
    with pytest.raises(ValueError, match="expected shape"):
        _core.sgemm(c, np.zeros((3, 5), np.float32), np.zeros((5, 5), np.float32))
    with pytest.raises(ValueError, match="bias"):
        _core.sgemm(
            c,
            np.zeros((3, 5), np.float32),
            np.zeros((5, 4), np.float32),
            bias=np.zeros(5, np.float32),
        )


def _cpu_flags() -> set[str] | None:
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def _expected_path(requested: str, flags: set[str]) -> str:
    avx512 = {"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma"} <= flags
    avx2 = {"avx2", "fma"} <= flags
    order = ["avx512", "avx2", "scalar"]
    for path in order[order.index(requested) :]:
        if path == "scalar" or (path == "avx512" and avx512) or (path == "avx2" and avx2):
            return path
    return "scalar"


# The path is chosen once per process, so each one is exercised in a fresh interpreter.
_SUBPROCESS = """
import json, sys
import test_gemm
from cnnfast import _core
n = 0
for case in test_gemm.all_cases():
    test_gemm.check_case(*case)
    n += 1
for case in [(9, 40, 20), (300, 70, 390)]:
    test_gemm.check_case(*case, True, False, 0.5, 0.0, single_thread=True)
print(json.dumps({"path": _core.sgemm_simd_path(), "cases": n}))
"""


@pytest.mark.parametrize("requested", ["avx512", "avx2", "scalar"])
def test_sgemm_every_simd_path(requested):
    here = pathlib.Path(__file__).resolve().parent
    env = dict(os.environ, CNNFAST_SIMD=requested)
    # The child must import the same cnnfast as this process (installed or in-tree build).
    package_root = pathlib.Path(cnnfast.__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(package_root), str(here), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=here,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["cases"] == len(list(all_cases()))
    flags = _cpu_flags()
    if flags is not None:
        assert report["path"] == _expected_path(requested, flags)
    else:
        order = ["avx512", "avx2", "scalar"]
        assert order.index(report["path"]) >= order.index(requested)


def test_measured_fma_peak_is_a_finite_positive_rate():
    # The bench's yardstick for GEMM efficiency (fma_peak.h): a rate, on whichever SIMD path runs.
    gflops = _core.measure_fma_peak_gflops(200000)
    assert np.isfinite(gflops) and gflops > 0.1
    assert _core.measure_fma_peak_gflops(0) > 0  # fewer than one round is run as one


def test_measured_ukernel_rate_is_below_the_fma_peak():
    # The packed route's ceiling for the bench (gemm.h). Its micro-kernel issues FMAs as the peak
    # loop does plus loads, so it cannot beat the peak by more than the two measurements' noise
    # (a VM's clock drifts a few percent between calls; 1.5x leaves room for any such drift but
    # not for a miscounted tile or K depth, which would be off by a factor of MR, NR or K).
    # The scalar path is the exception: its peak loop is scalar FMAs, while the compiler may
    # vectorise the scalar micro-kernel, so there only a finite positive rate is required.
    peak = max(_core.measure_fma_peak_gflops() for _ in range(3))
    for in_l1 in (False, True):
        ukernel = _core.measure_sgemm_ukernel_gflops(20, in_l1=in_l1)
        assert np.isfinite(ukernel) and ukernel > 0.0
        if _core.sgemm_simd_path() != "scalar":
            assert ukernel < 1.5 * peak
        # fewer than one round is run as one
        assert _core.measure_sgemm_ukernel_gflops(0, in_l1=in_l1) > 0
