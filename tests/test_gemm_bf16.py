"""The bfloat16 GEMM (src/cpp/kernels/gemm_bf16.*): operands rounded to bfloat16, float32 sums.

Every vdpbf16ps-ordered path (vdpbf16ps where the CPU has AVX512-BF16, the portable micro-kernel
everywhere) must give the naive triple loop's bits; AMX tiles (where the CPU has them) sum in
their own order, so they must agree with it to float32 sums. On every path the products must sit
within the bounds that bfloat16's 8-bit significand and float32 sums allow of the float64
products.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnfast import _core

PATHS = [p for p in ("portable", "avx512_bf16") if _core.set_sgemm_bf16_path(p)]
ALL_PATHS = PATHS + [p for p in ("amx_bf16",) if _core.set_sgemm_bf16_path(p)]
_core.set_sgemm_bf16_path("auto")

# AMX's blocks are 16 or 32 rows by 32 columns, k in steps of 32: (32, 32, 64) fills one block
# exactly, (48, 96, 62) has a half block and a k tail of 15 pairs, (17, 64, 33) 17 rows (two
# tiles, one row in the second) and a 1-pair tail.
SHAPES = [(1, 1, 1), (14, 32, 2), (15, 33, 3), (37, 45, 19), (128, 64, 576), (3, 200, 64),
          (200, 3, 9), (29, 70, 0), (64, 10, 1000), (32, 32, 64), (48, 96, 62), (17, 64, 33)]


@pytest.fixture(params=ALL_PATHS)
def any_path(request):
    assert _core.set_sgemm_bf16_path(request.param)
    yield request.param
    _core.set_sgemm_bf16_path("auto")


@pytest.fixture(params=PATHS)
def path(request):
    assert _core.set_sgemm_bf16_path(request.param)
    yield request.param
    _core.set_sgemm_bf16_path("auto")


def _round(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    _core.round_to_bf16(out, x)
    return out


def test_rounding_matches_torch_bfloat16():
    rng = np.random.default_rng(0)
    x = np.concatenate([
        rng.standard_normal(10_000).astype(np.float32) * 10.0 ** rng.integers(-30, 30, 10_000),
        # ties: bit 15 set and nothing below; the even neighbour wins
        ((0x3F000000 + (np.arange(1, 2000, dtype=np.uint32) << 16)) | 0x8000).view(np.float32),
        np.array([0.0, -0.0, np.inf, -np.inf, 3.4e38, -3.4e38], np.float32)]).astype(np.float32)
    want = torch.from_numpy(x).to(torch.bfloat16).to(torch.float32).numpy()
    np.testing.assert_array_equal(_round(x), want)
    assert np.isnan(_round(np.array([np.nan], np.float32)))[0]
    # Subnormals: zero with their sign (torch keeps bfloat16 subnormals; vdpbf16ps reads them
    # as zero, so cnnfast flushes them when it rounds).
    tiny = np.array([1e-39, -1e-39, 1.1754942e-38], np.float32)
    got = _round(tiny)
    assert np.array_equal(got, [0.0, 0.0, 0.0]) and np.signbit(got).tolist() == [False, True, False]


@pytest.mark.parametrize("m,n,k", SHAPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True),
                                             (True, True)])
def test_every_path_gives_the_naive_bits(path, m, n, k, trans_a, trans_b):
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    for beta in (0.0, 1.0, -0.5):
        c0 = rng.standard_normal((m, n)).astype(np.float32)
        got, want = c0.copy(), c0.copy()
        _core.sgemm_bf16(got, a, b, trans_a, trans_b, beta)
        _core.sgemm_bf16(want, a, b, trans_a, trans_b, beta, naive=True)
        np.testing.assert_array_equal(got, want)


@pytest.mark.skipif("amx_bf16" not in ALL_PATHS, reason="this CPU has no AMX (or CNNFAST_SIMD "
                                                        "caps it)")
@pytest.mark.parametrize("m,n,k", SHAPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True),
                                             (True, True)])
def test_amx_agrees_with_the_naive_loop_to_float32_sums(m, n, k, trans_a, trans_b):
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    ra, rb = _round(a).astype(np.float64), _round(b).astype(np.float64)
    exact = (ra.T if trans_a else ra) @ (rb.T if trans_b else rb)
    magnitude = np.abs(ra.T if trans_a else ra) @ np.abs(rb.T if trans_b else rb)
    for beta in (0.0, 1.0, -0.5):
        c0 = rng.standard_normal((m, n)).astype(np.float32)
        got, want = c0.copy(), c0.copy()
        assert _core.set_sgemm_bf16_path("amx_bf16")
        try:
            _core.sgemm_bf16(got, a, b, trans_a, trans_b, beta)
        finally:
            _core.set_sgemm_bf16_path("auto")
        _core.sgemm_bf16(want, a, b, trans_a, trans_b, beta, naive=True)
        # The same products of the rounded operands, summed in float32 in another order: each
        # within the gamma_k bound (k + 1 additions with beta, each within 2^-24 of its result)
        # of the exact sum, so within twice that of each other.
        bound = (k + 1) * 2.0**-24 * (magnitude + abs(beta) * np.abs(c0))
        assert np.all(np.abs(got - (exact + beta * c0)) <= bound)
        assert np.all(np.abs(got - want) <= 2 * bound)


def test_beta_zero_never_reads_c(any_path):
    a = np.ones((20, 5), np.float32)
    b = np.ones((5, 40), np.float32)
    c = np.full((20, 40), np.nan, np.float32)
    _core.sgemm_bf16(c, a, b)
    np.testing.assert_array_equal(c, 5.0)
    c[:] = np.nan
    _core.sgemm_bf16(c, np.ones((20, 0), np.float32), np.ones((0, 40), np.float32))
    np.testing.assert_array_equal(c, 0.0)


@pytest.mark.parametrize("m,n,k", [(64, 96, 4608), (300, 50, 75), (17, 128, 1152)])
def test_error_bounds_against_float64(any_path, m, n, k):
    rng = np.random.default_rng(k)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.uniform(-2, 2, (k, n)).astype(np.float32)
    c = np.zeros((m, n), np.float32)
    _core.sgemm_bf16(c, a, b)
    magnitude = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)  # sum |a||b|
    # Against the exact products of the rounded operands: float32 sums of k terms, each
    # addition within 2^-24 of its result: |error| <= k * 2^-24 * sum |a b| (the classic
    # gamma_k bound, to first order).
    exact = _round(a).astype(np.float64) @ _round(b).astype(np.float64)
    assert np.all(np.abs(c - exact) <= k * 2.0**-24 * magnitude)
    # Against the unrounded operands: bfloat16's 8-bit significand rounds each within
    # u = 2^-8 of itself, relatively, so each product within 2u + u^2 (plus the sums' error).
    full = a.astype(np.float64) @ b.astype(np.float64)
    assert np.all(np.abs(c - full) <= (2.0**-7 + 2.0**-16 + k * 2.0**-24) * magnitude)
    # And bfloat16 does lose precision: the float32 GEMM is closer, by about 2^-8 / 2^-24.
    assert np.abs(c - full).max() > 100 * np.abs((a @ b) - full).max()


def test_matches_torch_bfloat16_products(any_path):
    # torch's bfloat16 matmul on the CPU also sums in float32: the same products, another
    # order of the sums.
    rng = np.random.default_rng(5)
    a = rng.standard_normal((96, 288)).astype(np.float32)
    b = rng.standard_normal((288, 40)).astype(np.float32)
    c = np.zeros((96, 40), np.float32)
    _core.sgemm_bf16(c, a, b)
    ta, tb = torch.from_numpy(a).to(torch.bfloat16), torch.from_numpy(b).to(torch.bfloat16)
    ref = (ta.float() @ tb.float()).numpy()  # float32 sums of the same bfloat16 operands
    magnitude = np.abs(_round(a)) @ np.abs(_round(b))
    assert np.all(np.abs(c - ref) <= 2 * 288 * 2.0**-24 * magnitude)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"inner dimensions differ: op\(a\) \(3, 4\), op\(b\) "
                                         r"\(5, 2\)"):
        _core.sgemm_bf16(np.zeros((3, 2), np.float32), np.zeros((3, 4), np.float32),
                         np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError, match="sgemm_bf16 c"):
        _core.sgemm_bf16(np.zeros((3, 3), np.float32), np.zeros((3, 4), np.float32),
                         np.zeros((4, 2), np.float32))
    assert not _core.set_sgemm_bf16_path("avx1024")


def test_measured_bf16_peak_counts_two_products_a_lane():
    # The bfloat16 GEMM's yardstick (fma_peak.h): 0 without AVX512-BF16; else a rate that counts
    # vdpbf16ps's two multiply-adds per float32 lane, near the FMA peak's 1-2x on the CPUs that
    # have it (Zen 4/5: 2x; a miscounted lane or product would be off by 2x-16x more). Maxima of
    # three, as a VM's clock drifts between calls. 0 too where CNNFAST_SIMD caps the kernels
    # below avx512, as the bfloat16 GEMM's automatic path then is the portable kernel. The Xeon
    # with AMX runs vdpbf16ps at half its FMA rate (0.50x: 111 against 222 GFLOP/s, one
    # thread, python -m bench.bench_gemm_bf16), so the lower bound is 0.35x.
    if _core.sgemm_bf16_path() == "portable":
        assert _core.measure_bf16_peak_gflops(1000) == 0.0
        return
    bf16 = max(_core.measure_bf16_peak_gflops(2_000_000) for _ in range(3))
    fma = max(_core.measure_fma_peak_gflops(2_000_000) for _ in range(3))
    assert np.isfinite(bf16) and 0.35 * fma < bf16 < 3.0 * fma, (bf16, fma)


@pytest.mark.skipif("amx_bf16" not in ALL_PATHS, reason="this CPU has no AMX (or CNNFAST_SIMD "
                                                        "caps it)")
def test_amx_reconfigures_tiles_another_kernel_left_in_another_shape():
    # A thread's tiles stay configured between calls (amx_tiles.h); the int8 GEMM's blocks have
    # 14-row tiles, the bfloat16 GEMM's 16-row ones, and torch's own AMX kernels (oneDNN) load
    # theirs and release them. Calls that alternate on one thread must each see their own shape:
    # a stale 14-row configuration would leave rows 14-15 and 30-31 of every bfloat16 block
    # unwritten (or fault, after a release).
    rng = np.random.default_rng(3)
    a = rng.standard_normal((64, 96)).astype(np.float32)
    b = rng.standard_normal((96, 64)).astype(np.float32)
    want = np.full((64, 64), np.nan, np.float32)
    _core.sgemm_bf16(want, a, b, naive=True)
    bound = 2 * 97 * 2.0**-24 * (np.abs(_round(a)) @ np.abs(_round(b)))
    qa = rng.integers(0, 256, (42, 128), dtype=np.uint8)
    qb = rng.integers(-128, 128, (128, 32), dtype=np.int8)
    assert _core.set_sgemm_bf16_path("amx_bf16") and _core.set_gemm_u8s8_path("amx_int8")
    try:
        for other in ("int8", "torch", "int8", "none"):
            if other == "int8":
                q = np.zeros((42, 32), np.int32)
                _core.gemm_u8s8s32(q, qa, qb)
                np.testing.assert_array_equal(q, qa.astype(np.int64) @ qb.astype(np.int64))
            elif other == "torch":
                t = torch.from_numpy(a).to(torch.bfloat16)
                torch.matmul(t, t.T)  # oneDNN's kernels, on AMX where torch takes it
            c = np.full((64, 64), np.nan, np.float32)
            _core.sgemm_bf16(c, a, b)
            assert np.all(np.abs(c - want) <= bound), other
    finally:
        _core.set_sgemm_bf16_path("auto")
        _core.set_gemm_u8s8_path("auto")
