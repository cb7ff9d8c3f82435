"""The int8 GEMM (src/cpp/kernels/gemm_u8s8.*): uint8 activations times int8 weights, summed
exactly in int32. Every path (AMX tiles where the CPU has AMX, vpdpbusd where it has
AVX512-VNNI, the portable micro-kernel everywhere) must equal the exact integer product."""

from __future__ import annotations

import numpy as np
import pytest

from cnnfast import _core

PATHS = [p for p in ("portable", "avx512_vnni", "amx_int8") if _core.set_gemm_u8s8_path(p)]
_core.set_gemm_u8s8_path("auto")


@pytest.fixture(params=PATHS)
def path(request):
    assert _core.set_gemm_u8s8_path(request.param)
    yield request.param
    _core.set_gemm_u8s8_path("auto")


# AMX's blocks are two 14-row tiles by 32 columns, k in steps of 64: (28, 32, 64) fills one
# exactly, (42, 64, 65) has a lone third tile and a 1-quad tail, (29, 96, 128) one row in its
# second block.
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (14, 32, 4), (15, 33, 5), (37, 45, 19),
                                   (128, 64, 576), (3, 200, 3), (200, 3, 1153), (5, 7, 0),
                                   (28, 32, 64), (42, 64, 65), (29, 96, 128)])
def test_exact_integer_products(path, m, n, k):
    rng = np.random.default_rng(m * 7 + n * 3 + k)
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    want = a.astype(np.int64) @ b.astype(np.int64)
    c = np.full((m, n), 7, np.int32)
    _core.gemm_u8s8s32(c, a, b)
    np.testing.assert_array_equal(c, want)
    _core.gemm_u8s8s32(c, a, b, accumulate=True)
    np.testing.assert_array_equal(c, 2 * want)
    naive = np.zeros((m, n), np.int32)
    _core.gemm_u8s8s32(naive, a, b, naive=True)
    np.testing.assert_array_equal(naive, want)


def test_extremes_do_not_saturate(path):
    # 255 * -128 summed over the largest K allowed: exactly representable, no saturation.
    k = 65_000
    a = np.full((14, k), 255, np.uint8)
    b = np.full((k, 32), -128, np.int8)
    c = np.zeros((14, 32), np.int32)
    _core.gemm_u8s8s32(c, a, b)
    assert np.all(c == 255 * -128 * k)


def test_bad_inputs_are_refused():
    a = np.zeros((2, 3), np.uint8)
    with pytest.raises(ValueError, match="gemm_u8s8s32 b: expected dtype int8"):
        _core.gemm_u8s8s32(np.zeros((2, 4), np.int32), a, np.zeros((3, 4), np.uint8))
    with pytest.raises(ValueError, match=r"inner dimensions differ: a \(2, 3\), b \(4, 4\)"):
        _core.gemm_u8s8s32(np.zeros((2, 4), np.int32), a, np.zeros((4, 4), np.int8))
    with pytest.raises(ValueError, match="could overflow the int32 sums"):
        _core.gemm_u8s8s32(np.zeros((1, 1), np.int32), np.zeros((1, 70_000), np.uint8),
                           np.zeros((70_000, 1), np.int8))
    assert not _core.set_gemm_u8s8_path("amx")
