"""conv2d forward/backward (fast im2col+GEMM path and naive loops) against the float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from gradcheck import assert_gradient

from cnnfast import _core
from cnnfast.ops.conv import conv2d, conv2d_backward, conv2d_geometry
from cnnfast.shapes import conv_padding, pair

U32 = 2.0**-24  # unit roundoff of float32


def assert_sum_close(got, want, abs_terms, factor=32):
    """|got - want| <= factor * u * sum(|terms|) elementwise.

    A float32 sum of n terms is off by at most ~n*u*sum|terms| (worst case); blocked GEMM
    accumulation with random-sign data stays near u*sum|terms|, so 32u leaves ample margin while
    still catching a single wrong or missing term (which is off by ~|term| >> 32u*sum).
    `abs_terms` is the reference evaluated on absolute values, i.e. sum|terms| per element.
    """
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.all(np.isfinite(got))
    err = np.abs(got - want)
    bound = factor * U32 * abs_terms + 1e-30
    worst = np.unravel_index(np.argmax(err / bound), err.shape)
    assert np.all(err <= bound), (
        f"max error/bound {err[worst] / bound[worst]:.3g} at {worst}: got {got[worst]}, "
        f"want {want[worst]}"
    )


def assert_backward_close(got, x, w, dy, strides, pads, groups=1):
    """got = (dx, dw, db), each within assert_sum_close's bound of the float64 reference."""
    want = ref.conv2d_backward(x, w, dy, strides, pads, groups)
    abs_terms = ref.conv2d_backward(np.abs(x), np.abs(w), np.abs(dy), strides, pads, groups)
    for g, wnt, a in zip(got, want, abs_terms):
        assert_sum_close(g, wnt, a)


def geometry(case):
    """(pads per side for the reference, strides, (pad_top, pad_left), (OH, OW)) of a case."""
    _, H, W, _, KH, KW, _, strides, padding, _ = case
    sh, sw = pair(strides, "strides")
    if isinstance(padding, str):
        ph = pw = padding
    else:
        ph, pw = pair(padding, "padding")
    t, b, OH = conv_padding(H, KH, sh, ph)
    le, r, OW = conv_padding(W, KW, sw, pw)
    return ((t, b), (le, r)), (sh, sw), (t, le), (OH, OW)


def make_inputs(case, rng):
    N, H, W, C, KH, KW, K, _, _, groups = case
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    w = rng.standard_normal((KH, KW, C // groups, K)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    return x, w, b


# (N, H, W, C, KH, KW, K, strides, padding, groups)
HAND_CASES = [
    (2, 5, 6, 4, 1, 1, 6, 1, "valid", 1),  # 1x1: plain GEMM, no im2col
    (3, 4, 5, 8, 1, 1, 6, 1, "valid", 2),  # grouped 1x1: strided sub-GEMMs on x itself
    (2, 7, 7, 3, 1, 1, 5, 2, "valid", 1),  # 1x1 strided: needs im2col
    (2, 4, 3, 5, 4, 3, 7, 1, "valid", 1),  # kernel covers the input: x is the column matrix
    (2, 4, 3, 4, 4, 3, 6, 1, "valid", 2),  # same, grouped: im2col path
    (1, 7, 7, 2, 3, 3, 3, 3, "valid", 1),  # (7-3)/3 inexact: last input row/col ignored
    (2, 8, 9, 3, 3, 3, 4, 2, "same", 1),  # same with stride: ceil(n/s) outputs
    (3, 6, 5, 3, 2, 2, 2, 1, "same", 1),  # even kernel: extra pad at bottom/right
    (2, 9, 10, 5, 2, 5, 3, (2, 1), (1, 2), 1),  # rectangular kernel, explicit pair padding
    (1, 6, 6, 4, 3, 3, 8, 2, 1, 4),  # depthwise-style: C/groups = 1, explicit int padding
    (5, 3, 3, 7, 3, 3, 5, 1, "same", 1),  # odd channels, batch 5
    (2, 13, 13, 64, 3, 3, 64, 1, "valid", 1),  # Keras-CNN conv2 shape, small batch
    (1, 1, 1, 3, 1, 1, 2, 1, "valid", 1),  # 1x1 image
    (2, 5, 5, 6, 5, 5, 4, 3, 2, 2),  # padding 2 on a 5x5 kernel with stride 3, groups 2
    # The direct forward's one-pointer row tiles (16/32/64 floats between columns): rows of
    # 12 + 12 + 8 pixels (ResNet-20's first stage; backward-data as a flipped forward too),
    # 12 + 2 and 8 + 4 + 2 at 40 outputs (8-pixel tiles), 4 + 3 at 7 columns.
    (2, 32, 32, 16, 3, 3, 16, 1, "same", 1),
    (1, 9, 14, 32, 3, 3, 40, 1, "same", 1),
    (2, 6, 7, 64, 3, 3, 20, 1, 1, 1),
    # Backward-weights vectorised over the field (8 or 16 output channels, field rows of whole
    # vectors): rows of 3, 2 and 1 vectors (48 = KW*16, 32 = 2*16, KW*C = 16), stride 2.
    (2, 9, 7, 16, 3, 3, 8, 1, "same", 1),
    (1, 10, 9, 16, 2, 2, 16, 1, "valid", 1),
    (2, 7, 8, 16, 1, 1, 16, 2, "valid", 1),
    (1, 9, 9, 48, 3, 3, 8, 2, "same", 1),
]


def random_cases(count, seed):
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        groups = int(rng.choice([1, 1, 2, 4]))
        C = groups * int(rng.integers(1, 5))
        K = groups * int(rng.integers(1, 4))
        N = int(rng.integers(1, 6))
        H, W = (int(v) for v in rng.integers(1, 12, size=2))
        KH, KW = (int(v) for v in rng.integers(1, 5, size=2))
        strides = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        padding = [
            "valid",
            "same",
            int(rng.integers(0, 3)),
            (int(rng.integers(0, 3)), int(rng.integers(0, 3))),
        ][int(rng.integers(0, 4))]
        case = (N, H, W, C, KH, KW, K, strides, padding, groups)
        try:
            conv2d_geometry((N, H, W, C), (KH, KW, C // groups, K), strides, padding, groups)
        except ValueError:
            continue  # kernel larger than the padded input, or padding >= kernel
        cases.append(case)
    return cases


ALL_CASES = HAND_CASES + random_cases(40, seed=7)


def _algorithms():
    """The conv2d algorithms this CPU can run ("direct" and "winograd" need AVX-512).

    "winograd" forces Winograd F(2x2, 3x3) on every 3x3 stride-1 convolution of one group (the
    other cases then run the direct kernels), whatever its size or channel counts.
    """
    algos = ["im2col"]
    for name in ("direct", "winograd", "streamed"):
        if _core.set_conv2d_algorithm(name):
            algos.append(name)
    _core.set_conv2d_algorithm("auto")
    return algos


ALGORITHMS = _algorithms()


@pytest.fixture(params=ALGORITHMS)
def algorithm(request):
    assert _core.set_conv2d_algorithm(request.param)
    yield request.param
    _core.set_conv2d_algorithm("auto")


def core_forward(x, w, b, case, naive, activation="linear"):
    _, strides, (pt, pl), (OH, OW) = geometry(case)
    y = np.full((x.shape[0], OH, OW, w.shape[3]), np.nan, np.float32)  # NaN: must be overwritten
    _core.conv2d_forward(y, x, w, b, *strides, pt, pl, case[-1], naive=naive,
                         activation=activation)
    return y


def core_backward(x, w, dy, case, naive):
    _, strides, (pt, pl), _ = geometry(case)
    dx = np.full_like(x, np.nan)
    dw = np.full_like(w, np.nan)
    db = np.full(w.shape[3], np.nan, np.float32)
    _core.conv2d_backward_data(dx, dy, w, *strides, pt, pl, case[-1], naive=naive)
    _core.conv2d_backward_weights(dw, db, x, dy, *strides, pt, pl, case[-1], naive=naive)
    return dx, dw, db


@pytest.mark.parametrize("naive", [False, True], ids=["fast", "naive"])
@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_conv2d_forward_matches_reference(case, naive, algorithm, rng):
    x, w, b = make_inputs(case, rng)
    pads, strides, _, _ = geometry(case)
    groups = case[-1]
    want = ref.conv2d_forward(x, w, b, strides, pads, groups)
    abs_terms = ref.conv2d_forward(np.abs(x), np.abs(w), np.abs(b), strides, pads, groups)
    assert_sum_close(core_forward(x, w, b, case, naive), want, abs_terms)
    # Without bias too, and through the public op.
    want_nb = ref.conv2d_forward(x, w, None, strides, pads, groups)
    assert_sum_close(core_forward(x, w, None, case, naive), want_nb, abs_terms)
    if not naive:
        _, _, _, _, _, _, _, st, padding, _ = case
        got = conv2d(x, w, b, strides=st, padding=padding, groups=groups)
        assert_sum_close(got, want, abs_terms)


@pytest.mark.parametrize("naive", [False, True], ids=["fast", "naive"])
@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_conv2d_backward_matches_reference(case, naive, algorithm, rng):
    x, w, _ = make_inputs(case, rng)
    pads, strides, _, (OH, OW) = geometry(case)
    groups = case[-1]
    dy = rng.standard_normal((x.shape[0], OH, OW, w.shape[3])).astype(np.float32)
    assert_backward_close(core_backward(x, w, dy, case, naive), x, w, dy, strides, pads, groups)
    if not naive:
        _, _, _, _, _, _, _, st, padding, _ = case
        got = conv2d_backward(x, w, dy, strides=st, padding=padding, groups=groups)
        assert_backward_close(got, x, w, dy, strides, pads, groups)


@pytest.mark.parametrize("threads", [2, 3])
def test_conv2d_chunked_batch_matches_reference(threads, algorithm, rng, restore_threads):
    # Big enough that the column workspace is split into several chunks, with chunk borders
    # falling inside images (so im2col/col2im and the dw accumulation across chunks are tested).
    # With 3 threads the 11 row blocks are too few to balance, so forward/dw use shared chunks
    # too (2 of them); with 2 threads they use per-thread blocks.
    case = (3, 40, 40, 64, 3, 3, 16, 1, "same", 1)
    _, strides, (pt, pl), (OH, OW) = geometry(case)
    ws = _core.conv2d_workspace_size(3, 40, 40, 64, 3, 3, 16, OH, OW, 1, 1, pt, pl, 1)
    assert ws < 3 * OH * OW * 3 * 3 * 64, "case no longer exercises several chunks"
    x, w, b = make_inputs(case, rng)
    pads = geometry(case)[0]
    dy = rng.standard_normal((3, OH, OW, 16)).astype(np.float32)
    _core.set_num_threads(threads)
    y = core_forward(x, w, b, case, False)
    got = core_backward(x, w, dy, case, False)
    assert_sum_close(
        y,
        ref.conv2d_forward(x, w, b, strides, pads),
        ref.conv2d_forward(np.abs(x), np.abs(w), np.abs(b), strides, pads),
    )
    assert_backward_close(got, x, w, dy, strides, pads)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize(
    "case",
    [
        # With 2 threads: per-thread row blocks for forward/dw, whole images per thread for dx.
        (12, 24, 24, 32, 3, 3, 8, 1, "same", 1),
        # Too few blocks and images to balance: shared chunks with threaded im2col/col2im.
        (3, 24, 24, 32, 3, 3, 8, 1, "same", 1),
        (5, 17, 19, 8, 3, 2, 4, (2, 1), "valid", 2),
    ],
    ids=str,
)
def test_conv2d_any_thread_count_matches_reference(case, threads, algorithm, rng, restore_threads):
    x, w, b = make_inputs(case, rng)
    pads, strides, _, (OH, OW) = geometry(case)
    groups = case[-1]
    dy = rng.standard_normal((x.shape[0], OH, OW, w.shape[3])).astype(np.float32)
    _core.set_num_threads(threads)
    y = core_forward(x, w, b, case, False)
    got = core_backward(x, w, dy, case, False)
    assert_sum_close(
        y,
        ref.conv2d_forward(x, w, b, strides, pads, groups),
        ref.conv2d_forward(np.abs(x), np.abs(w), np.abs(b), strides, pads, groups),
    )
    assert_backward_close(got, x, w, dy, strides, pads, groups)


# Shapes of the direct kernels' special regimes: one input channel (LeNet C1, Keras conv1),
# channel counts that are not multiples of 16 (masked vector tails: K = 6, 33, 70 spans two
# column blocks of 64), tiles of dw rows that straddle kernel rows (KW*C < 12), reduction
# blocks (VGG-like C = 64..128), and pixel tiles that straddle output rows (OW % tile != 0).
DIRECT_CASES = [
    (3, 28, 28, 1, 3, 3, 64, 1, "valid", 1),  # Keras conv1
    (2, 32, 32, 1, 5, 5, 6, 1, "valid", 1),  # LeNet C1
    (2, 14, 14, 6, 5, 5, 16, 1, "valid", 1),  # LeNet C3
    (2, 13, 13, 64, 3, 3, 64, 1, "valid", 1),  # Keras conv2
    (2, 8, 8, 128, 3, 3, 128, 1, "same", 1),  # VGG-like, several reduction blocks, padded
    (2, 7, 9, 3, 3, 3, 70, 2, "same", 1),  # K = 70: 64 + masked 6
    (1, 5, 5, 2, 3, 3, 33, 1, "valid", 1),  # K = 33: 3 vectors, the last 1 lane
    (2, 9, 10, 5, 2, 5, 3, (2, 1), "same", 1),  # strides, even kernel, C = K < 16
    (2, 11, 6, 4, 4, 1, 48, (1, 3), (2, 0), 1),  # 4x1 kernel, stride 3 across, rows beyond reach
]


@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("case", DIRECT_CASES, ids=str)
def test_conv2d_direct_shapes_and_fused_relu_match_reference(case, activation, algorithm, rng):
    x, w, b = make_inputs(case, rng)
    pads, strides, _, (OH, OW) = geometry(case)
    want = ref.conv2d_forward(x, w, b, strides, pads)
    abs_terms = ref.conv2d_forward(np.abs(x), np.abs(w), np.abs(b), strides, pads)
    if activation == "relu":
        want = np.maximum(want, 0.0)  # ReLU is 1-Lipschitz: the sum bound still holds
    for naive in (False, True):
        assert_sum_close(core_forward(x, w, b, case, naive, activation), want, abs_terms)
    dy = rng.standard_normal((x.shape[0], OH, OW, w.shape[3])).astype(np.float32)
    assert_backward_close(core_backward(x, w, dy, case, False), x, w, dy, strides, pads)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "elu", "swish"])
@pytest.mark.parametrize("case", [DIRECT_CASES[1], DIRECT_CASES[2], DIRECT_CASES[4],
                                  (2, 9, 9, 16, 3, 3, 24, 1, "same", 1)], ids=str)
def test_conv2d_fused_activation_equals_separate_pass(case, activation, algorithm, rng,
                                                     restore_threads):
    # Activations other than ReLU run on each band of output while it is in cache (or on the
    # whole output after Winograd and im2col): the same element-wise kernel, so the result is
    # bit-identical to a convolution followed by activation_forward, at any thread count.
    x, w, b = make_inputs(case, rng)
    want = core_forward(x, w, b, case, False)
    _core.activation_forward(want, want, activation, 1.0)
    for threads in (1, 2):
        _core.set_num_threads(threads)
        got = core_forward(x, w, b, case, False, activation)
        np.testing.assert_array_equal(got, want)
    # Both paths against the float64 reference. These activations change their input by a
    # slope of at most 1.1 (swish; tanh, sigmoid and elu <= 1), so the convolution's sum bound
    # grows by that factor; the activation adds its own rounding, a few ulps of |y| (64u).
    pads, strides, _, _ = geometry(case)
    want64 = ref.activation(ref.conv2d_forward(x, w, b, strides, pads), activation)
    bound = 1.1 * 32 * U32 * ref.conv2d_forward(np.abs(x), np.abs(w), np.abs(b), strides, pads)
    bound += 64 * U32 * np.abs(want64)
    for got in (want, core_forward(x, w, b, case, True, activation)):
        assert np.all(np.abs(got - want64) <= bound)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "case",
    [
        # Enough work for two threads: whole images per thread.
        (8, 16, 16, 16, 3, 3, 32, 1, "same", 1),
        (16, 28, 28, 1, 3, 3, 64, 1, "valid", 1),
        # Two images for two threads: forward and dw split images into bands of output rows.
        (2, 24, 24, 16, 3, 3, 32, 1, "same", 1),
        (1, 40, 40, 8, 5, 5, 16, 2, "same", 1),
        # One image whose Winograd tiles make a single block: the threads split its transforms
        # by tiles and its GEMMs by position (the Keras MNIST CNN's second convolution; 48
        # outputs leave a masked vector).
        (1, 13, 13, 64, 3, 3, 64, 1, "valid", 1),
        (1, 16, 16, 48, 3, 3, 48, 1, "same", 1),
    ],
    ids=str,
)
def test_conv2d_direct_threads_match_reference(case, threads, algorithm, rng, restore_threads):
    x, w, b = make_inputs(case, rng)
    pads, strides, _, (OH, OW) = geometry(case)
    dy = rng.standard_normal((x.shape[0], OH, OW, w.shape[3])).astype(np.float32)
    _core.set_num_threads(threads)
    y = core_forward(x, w, b, case, False, "relu")
    got = core_backward(x, w, dy, case, False)
    want = np.maximum(ref.conv2d_forward(x, w, b, strides, pads), 0.0)
    assert_sum_close(y, want, ref.conv2d_forward(np.abs(x), np.abs(w), np.abs(b), strides, pads))
    assert_backward_close(got, x, w, dy, strides, pads)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", [
    (1, 4, 4, 256, 3, 3, 256, 1, "same", 1),
    (2, 2, 3, 128, 3, 3, 300, 1, "same", 1),
], ids=str)
def test_conv2d_forward_split_by_output_channels_matches_reference(case, threads, rng,
                                                                   restore_threads):
    """Weights larger than the input (batch-1 VGG's small maps): on two threads the direct
    forward splits the output channels in 64-wide blocks (a masked last block: 300 = 4 x 64 +
    44; two images), each thread reading its share of the weights."""
    x, w, b = make_inputs(case, rng)
    pads, strides, _, _ = geometry(case)
    _core.set_num_threads(threads)
    for activation in ("relu", "tanh"):
        y = core_forward(x, w, b, case, False, activation)
        z = ref.conv2d_forward(x, w, b, strides, pads)
        want = np.maximum(z, 0.0) if activation == "relu" else np.tanh(z)
        # tanh is 1-Lipschitz and the kernel's within ~2 ulps: the sum's bound carries over.
        assert_sum_close(y, want, ref.conv2d_forward(np.abs(x), np.abs(w), np.abs(b), strides,
                                                     pads), factor=64)


# Stride-1 backward-data of wide inputs (C >= 64) runs as a forward convolution of zero-padded
# dy with the flipped, channel-transposed kernel: even kernels (asymmetric "same" padding),
# rectangular kernels, explicit padding, a masked channel tail (C = 80 = 64 + 16, 72 = 64 + 8),
# outputs narrower than the input (valid) and one or two threads (images or bands per thread).
FLIPPED_BACKWARD_DATA_CASES = [
    (2, 6, 7, 64, 2, 2, 16, 1, "same", 1),
    (3, 5, 8, 80, 3, 1, 24, 1, "valid", 1),
    (2, 9, 6, 72, 2, 3, 8, 1, (1, 0), 1),
    (1, 10, 10, 64, 5, 5, 6, 1, 2, 1),
    (4, 8, 8, 128, 3, 3, 130, 1, "same", 1),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", FLIPPED_BACKWARD_DATA_CASES, ids=str)
def test_conv2d_backward_data_as_flipped_forward_matches_reference(case, threads, algorithm, rng,
                                                                    restore_threads):
    x, w, _ = make_inputs(case, rng)
    pads, strides, _, (OH, OW) = geometry(case)
    dy = rng.standard_normal((x.shape[0], OH, OW, w.shape[3])).astype(np.float32)
    _core.set_num_threads(threads)
    got = core_backward(x, w, dy, case, False)
    assert_backward_close(got, x, w, dy, strides, pads)


# Winograd F(2x2, 3x3) (3x3, stride 1, one group): odd and even output sizes (edge tiles with one
# row or column), "valid", "same" and explicit padding up to 2, channel counts that are not
# multiples of 16 and above 64 (several micro-kernel column blocks), more tiles than one block,
# and one or two threads (blocks of tiles split statically; dw partials summed per thread). The
# last two have enough channels (C x K >= 32768) for the kernel transform itself to take two
# threads, through the forward ("same") and the transposed backward-data ("valid") layouts.
WINOGRAD_CASES = [
    (2, 13, 13, 64, 3, 3, 64, 1, "valid", 1),
    (3, 8, 9, 5, 3, 3, 7, 1, "same", 1),
    (1, 6, 5, 17, 3, 3, 33, 1, 1, 1),
    (2, 7, 7, 3, 3, 3, 70, 1, "valid", 1),
    (1, 4, 4, 16, 3, 3, 16, 1, 2, 1),
    (2, 3, 3, 8, 3, 3, 8, 1, "valid", 1),
    (2, 10, 11, 130, 3, 3, 20, 1, (2, 0), 1),
    (9, 16, 16, 24, 3, 3, 40, 1, "same", 1),
    (1, 4, 5, 200, 3, 3, 170, 1, "same", 1),
    (1, 6, 6, 200, 3, 3, 170, 1, "valid", 1),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", WINOGRAD_CASES, ids=str)
def test_conv2d_winograd_matches_reference(case, threads, rng):
    if not _core.set_conv2d_algorithm("winograd"):
        pytest.skip("Winograd needs the AVX-512 kernels, which this CPU or build lacks")
    x, w, b = make_inputs(case, rng)
    pads, strides, _, (OH, OW) = geometry(case)
    dy = rng.standard_normal((x.shape[0], OH, OW, w.shape[3])).astype(np.float32)
    _core.set_num_threads(threads)
    try:
        assert _core.conv2d_algorithm() == "winograd"
        y = core_forward(x, w, b, case, False, "relu")
        got = core_backward(x, w, dy, case, False)
        again = core_backward(x, w, dy, case, False)
    finally:
        _core.set_num_threads(0)
        _core.set_conv2d_algorithm("auto")
    want = np.maximum(ref.conv2d_forward(x, w, b, strides, pads), 0.0)
    assert_sum_close(y, want, ref.conv2d_forward(np.abs(x), np.abs(w), np.abs(b), strides, pads))
    assert_backward_close(got, x, w, dy, strides, pads)
    for g, h in zip(got, again):  # static split: bit-identical at a given thread count
        assert np.array_equal(g, h)


# A single image's small maps with kernels over 1 MiB (2^18 floats) take the weight-streaming
# forward under "auto" (VGG16-CIFAR's batch-1 last blocks; dev/vgg_batch1_layers.py times "auto"
# against both): a 2x2 map whose taps are read by 1, 2 or 4 pixels, 4x4 and 8x8 "same" maps, a
# strided "valid" one, 520 channels (a masked tail).
STREAMED_CASES = [
    (1, 2, 2, 64, 3, 3, 520, 1, "same", 1),
    (1, 4, 4, 128, 3, 3, 256, 1, "same", 1),
    (1, 8, 8, 96, 3, 3, 320, 1, "same", 1),
    (1, 9, 9, 160, 3, 3, 200, 2, "valid", 1),
]


@pytest.mark.parametrize("case", STREAMED_CASES, ids=str)
def test_conv2d_streamed_forward_gives_the_direct_kernels_bits(case, rng, restore_threads):
    # Each output starts from its bias and adds the taps' products in (kh, kw, c) order, one FMA
    # chain, as the direct micro-kernels do (their padding taps add exact zeros), so the sums are
    # the same bits, at any thread count (threads split the output channels).
    if not _core.set_conv2d_algorithm("streamed"):
        pytest.skip("the weight-streaming kernel needs AVX-512, which this CPU or build lacks")
    x, w, b = make_inputs(case, rng)
    assert w.size > 1 << 18
    pads, strides, _, _ = geometry(case)
    results = {}
    try:
        for algorithm in ("streamed", "direct", "auto"):
            assert _core.set_conv2d_algorithm(algorithm)
            for threads in (1, 2):
                _core.set_num_threads(threads)
                results[algorithm, threads] = core_forward(x, w, b, case, False, "relu")
    finally:
        _core.set_conv2d_algorithm("auto")
    want = np.maximum(ref.conv2d_forward(x, w, b, strides, pads), 0.0)
    assert_sum_close(results["streamed", 1], want,
                     ref.conv2d_forward(np.abs(x), np.abs(w), np.abs(b), strides, pads))
    for got in results.values():
        np.testing.assert_array_equal(got, results["streamed", 1])


@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_winograd_wide_layer_in_several_passes_matches_direct(threads, rng, restore_threads):
    """Wide layers (16 C K > 2^18 floats) run Winograd position by position over passes of at
    most 2^22 floats of V and M: 936 tiles at 136 -> 136 channels, so 4 images of 32x32 ("same",
    1024 tiles) take two passes, in the forward, backward-data (its flipped forward) and
    backward-weights. A float64 reference of these 680M multiply-adds per pass would take seconds,
    so the yardstick is the direct kernels, themselves held to the float64 reference above: each
    result is within 32u * sum|terms| of the exact value (assert_sum_close), so the two differ by
    at most 64u."""
    if not _core.set_conv2d_algorithm("winograd"):
        pytest.skip("Winograd needs the AVX-512 kernels, which this CPU or build lacks")
    _core.set_conv2d_algorithm("auto")
    x = rng.standard_normal((4, 32, 32, 136)).astype(np.float32)
    w = rng.standard_normal((3, 3, 136, 136)).astype(np.float32)
    b = rng.standard_normal(136).astype(np.float32)
    dy = rng.standard_normal((4, 32, 32, 136)).astype(np.float32)
    _core.set_num_threads(threads)

    def run(algorithm, x, w, b, dy):
        y, dx = np.full_like(dy, np.nan), np.full_like(x, np.nan)
        dw, db = np.full_like(w, np.nan), np.full_like(b, np.nan)
        assert _core.set_conv2d_algorithm(algorithm)
        try:
            _core.conv2d_forward(y, x, w, b, 1, 1, 1, 1)
            _core.conv2d_backward_data(dx, dy, w, 1, 1, 1, 1)
            _core.conv2d_backward_weights(dw, db, x, dy, 1, 1, 1, 1)
        finally:
            _core.set_conv2d_algorithm("auto")
        return y, dx, dw, db

    abs_terms = run("direct", np.abs(x), np.abs(w), np.abs(b), np.abs(dy))
    for got, want, a in zip(run("winograd", x, w, b, dy), run("direct", x, w, b, dy), abs_terms):
        assert_sum_close(got, np.asarray(want, np.float64), np.asarray(a, np.float64), factor=64)


# One input channel, stride 1 and K <= 8 runs kernels vectorised over 16 output columns: widths
# below, at and past 16 (masked strips), every K from 1 to 8, "same" padding with even and
# rectangular kernels, and two threads (whole images, or bands of rows for a single image).
SINGLE_CHANNEL_CASES = [
    (3, 32, 32, 1, 5, 5, 6, 1, "valid", 1),
    (2, 9, 7, 1, 3, 3, 1, 1, "same", 1),
    (2, 20, 17, 1, 2, 4, 2, 1, "same", 1),
    (1, 18, 33, 1, 3, 2, 3, 1, (2, 1), 1),
    (2, 16, 16, 1, 1, 5, 4, 1, "valid", 1),
    (2, 12, 21, 1, 4, 3, 5, 1, "same", 1),
    (2, 11, 40, 1, 3, 3, 7, 1, "valid", 1),
    (1, 30, 30, 1, 5, 5, 8, 1, "same", 1),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", SINGLE_CHANNEL_CASES, ids=str)
def test_conv2d_single_channel_matches_reference(case, threads, algorithm, rng, restore_threads):
    x, w, b = make_inputs(case, rng)
    pads, strides, _, (OH, OW) = geometry(case)
    dy = rng.standard_normal((x.shape[0], OH, OW, w.shape[3])).astype(np.float32)
    _core.set_num_threads(threads)
    y = core_forward(x, w, b, case, False, "relu")
    y_nb = core_forward(x, w, None, case, False)
    got = core_backward(x, w, dy, case, False)
    abs_y = ref.conv2d_forward(np.abs(x), np.abs(w), np.abs(b), strides, pads)
    # ReLU is 1-Lipschitz: the sum bound still holds.
    assert_sum_close(y, np.maximum(ref.conv2d_forward(x, w, b, strides, pads), 0.0), abs_y)
    assert_sum_close(y_nb, ref.conv2d_forward(x, w, None, strides, pads), abs_y)
    assert_backward_close(got, x, w, dy, strides, pads)


def test_conv2d_single_channel_relu_propagates_nan_and_is_reproducible(rng, restore_threads):
    case = (4, 14, 14, 1, 5, 5, 6, 1, "valid", 1)
    x, w, b = make_inputs(case, rng)
    x[1, 3, 4, 0] = np.nan
    y = core_forward(x, w, b, case, False, "relu")
    assert np.isnan(y[1, 0:4, 0:5]).all() and np.isfinite(y[0]).all()
    x[1, 3, 4, 0] = 0.5
    dy = rng.standard_normal((4, 10, 10, 6)).astype(np.float32)
    _core.set_num_threads(2)
    first = core_backward(x, w, dy, case, False)
    again = core_backward(x, w, dy, case, False)
    for a, c in zip(first, again):
        np.testing.assert_array_equal(a, c)  # static split: bit-identical sums


def test_conv2d_algorithm_setter():
    assert _core.conv2d_algorithm() in ("auto", "im2col")
    assert _core.set_conv2d_algorithm("im2col") and _core.conv2d_algorithm() == "im2col"
    assert not _core.set_conv2d_algorithm("fft")  # unknown names are refused
    assert _core.set_conv2d_algorithm("auto")
    x = np.zeros((1, 5, 5, 3), np.float32)
    with pytest.raises(ValueError, match="activation must be"):
        _core.conv2d_forward(np.zeros((1, 3, 3, 4), np.float32), x,
                             np.zeros((3, 3, 3, 4), np.float32), None, activation="gelu")


def test_conv2d_simd_cap_selects_im2col():
    # CNNFAST_SIMD=avx2 caps every kernel family below AVX-512: conv2d then runs im2col + GEMM.
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np; from cnnfast import _core; "
        "print(_core.conv2d_algorithm(), _core.set_conv2d_algorithm('direct'))"
    )
    env = {**os.environ, "CNNFAST_SIMD": "avx2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(_core.__file__)))
    assert out.stdout.split() == ["im2col", "False"]


def test_conv2d_same_padding_puts_extra_row_at_bottom_right():
    # 4x4 input, 2x2 kernel, "same": total padding 1 per axis, all of it after (TensorFlow).
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    w = np.ones((2, 2, 1, 1), np.float32)
    y = conv2d(x, w, padding="same")
    want = ref.conv2d_forward(x, w, pads=((0, 1), (0, 1)))
    np.testing.assert_array_equal(y, want)  # small integer sums are exact in float32
    assert y[0, 3, 3, 0] == 15.0  # bottom-right output sees only x[3, 3]


def test_conv2d_zero_batch():
    x = np.zeros((0, 5, 5, 3), np.float32)
    w = np.ones((3, 3, 3, 2), np.float32)
    assert conv2d(x, w).shape == (0, 3, 3, 2)
    dx, dw, db = conv2d_backward(x, w, np.zeros((0, 3, 3, 2), np.float32))
    assert dx.shape == x.shape and not dw.any() and not db.any()


@pytest.mark.parametrize(
    "case",
    [
        (2, 5, 5, 3, 3, 3, 4, 1, "same", 1),
        (2, 6, 7, 4, 2, 3, 4, (2, 1), "valid", 2),
        (1, 4, 4, 2, 1, 1, 3, 1, "valid", 1),
    ],
    ids=str,
)
def test_conv2d_gradients_match_finite_differences(case, rng):
    x, w, b = make_inputs(case, rng)
    _, _, _, _, _, _, _, strides, padding, groups = case
    OH, OW = geometry(case)[3]
    r = rng.standard_normal((x.shape[0], OH, OW, w.shape[3]))  # loss = sum(y * r)
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))

    def loss():
        y = conv2d(x64, w64, b64, strides=strides, padding=padding, groups=groups)
        return float(np.sum(y.astype(np.float64) * r))

    dx, dw, db = conv2d_backward(x, w, r, strides=strides, padding=padding, groups=groups)
    # Default gradcheck tolerances (rtol 2e-2, atol 2e-3): see tests/gradcheck.py.
    assert_gradient(loss, x64, dx, max_points=32)
    assert_gradient(loss, w64, dw, max_points=32)
    assert_gradient(loss, b64, db)


# ---- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs, match",
    [
        ((5, 5, 3), (3, 3, 3, 4), {}, r"rank 4.*\(5, 5, 3\)"),
        ((1, 5, 5, 3), (3, 3, 4), {}, r"rank 4.*\(3, 3, 4\)"),
        ((1, 5, 5, 3), (3, 3, 2, 4), {}, r"conv2d.*\(1, 5, 5, 3\).*\(3, 3, 2, 4\)"),
        ((1, 2, 5, 3), (3, 3, 3, 4), {}, r"conv2d.*\(1, 2, 5, 3\).*larger"),
        ((1, 5, 5, 3), (3, 3, 3, 4), {"strides": 0}, r"conv2d.*\(1, 5, 5, 3\).*positive"),
        ((1, 5, 5, 3), (3, 3, 3, 4), {"strides": (1, 0)}, r"conv2d.*positive"),
        ((1, 5, 5, 4), (3, 3, 2, 3), {"groups": 2}, r"conv2d.*groups 2 must divide"),
        ((1, 5, 5, 4), (3, 3, 4, 4), {"groups": 0}, r"conv2d.*groups"),
        ((1, 5, 5, 3), (3, 3, 3, 4), {"padding": 3}, r"conv2d.*smaller than the kernel"),
        ((1, 5, 5, 3), (3, 3, 3, 4), {"padding": "full"}, r"conv2d.*padding"),
        ((1, 5, 5, 3), (3, 3, 3, 4), {"padding": -1}, r"conv2d.*non-negative"),
        ((1, 0, 5, 3), (3, 3, 3, 4), {}, r"conv2d.*positive"),
    ],
)
def test_conv2d_rejects_bad_arguments(x_shape, w_shape, kwargs, match):
    x = np.zeros(x_shape, np.float32)
    w = np.zeros(w_shape, np.float32)
    with pytest.raises(ValueError, match=match):
        conv2d(x, w, **kwargs)


def test_conv2d_rejects_bad_bias_dy_and_dtypes():
    x = np.zeros((1, 5, 5, 3), np.float32)
    w = np.zeros((3, 3, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"conv2d: b must have shape \(4,\)"):
        conv2d(x, w, np.zeros(3))
    with pytest.raises(ValueError, match=r"conv2d_backward: dy must have shape \(1, 3, 3, 4\)"):
        conv2d_backward(x, w, np.zeros((1, 3, 3, 5)))
    with pytest.raises(ValueError, match="real numeric"):
        conv2d(x.astype(np.complex64), w)
    with pytest.raises(ValueError, match="real numeric"):
        conv2d(x.astype(bool), w)
    # Integer inputs are converted.
    assert conv2d(x.astype(np.int32), w).dtype == np.float32


def test_core_conv2d_checks_buffers():
    x = np.zeros((2, 5, 5, 3), np.float32)
    w = np.zeros((3, 3, 3, 4), np.float32)
    y = np.zeros((2, 3, 3, 4), np.float32)
    with pytest.raises(ValueError, match="expected dtype float32"):
        _core.conv2d_forward(y, x.astype(np.float64), w, None, 1, 1, 0, 0, 1)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.conv2d_forward(y, np.asfortranarray(x), w, None, 1, 1, 0, 0, 1)
    # Output height 3..5 fits 5 rows with an implied bottom padding of 0..2; 6 does not.
    with pytest.raises(ValueError, match=r"height output size 6 does not fit.*between 3 and 5"):
        _core.conv2d_forward(np.zeros((2, 6, 3, 4), np.float32), x, w, None, 1, 1, 0, 0, 1)
    with pytest.raises(ValueError, match=r"width output size 2 does not fit"):
        _core.conv2d_forward(np.zeros((2, 3, 2, 4), np.float32), x, w, None, 1, 1, 0, 0, 1)
    with pytest.raises(ValueError, match=r"y must be \(N, OH, OW, K\)"):
        _core.conv2d_forward(np.zeros((1, 3, 3, 4), np.float32), x, w, None, 1, 1, 0, 0, 1)
    with pytest.raises(ValueError, match="padding must be in"):
        _core.conv2d_forward(y, x, w, None, 1, 1, 3, 0, 1)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        _core.conv2d_forward(y, x, w, None, 0, 1, 0, 0, 1)
    with pytest.raises(ValueError, match=r"b: expected shape \(4,\)"):
        _core.conv2d_forward(y, x, w, np.zeros(3, np.float32), 1, 1, 0, 0, 1)
    with pytest.raises(ValueError, match="output y overlaps input x"):
        y_over_x = x.reshape(-1)[: y.size].reshape(y.shape)  # a view into x's memory
        _core.conv2d_forward(y_over_x, x, w, None, 1, 1, 0, 0, 1)
    with pytest.raises(ValueError, match="read-only"):
        y.setflags(write=False)
        _core.conv2d_forward(y, x, w, None, 1, 1, 0, 0, 1)


@pytest.mark.parametrize("algorithm", ["im2col", "direct"])
def test_backward_is_bit_reproducible_with_threads(algorithm):
    """Same inputs and thread count -> bit-identical gradients (training must be repeatable)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((32, 13, 13, 64)).astype(np.float32)
    w = rng.standard_normal((3, 3, 64, 64)).astype(np.float32)
    dy = rng.standard_normal((32, 11, 11, 64)).astype(np.float32)
    previous = _core.conv2d_algorithm()
    _core.set_num_threads(2)
    try:
        _core.set_conv2d_algorithm(algorithm)
        first = conv2d_backward(x, w, dy)
        for _ in range(20):
            for a, b in zip(first, conv2d_backward(x, w, dy)):
                np.testing.assert_array_equal(a, b)
    finally:
        _core.set_conv2d_algorithm(previous)
        _core.set_num_threads(0)


@pytest.mark.parametrize("algorithm", ["im2col", "direct"])
def test_fused_relu_propagates_nan(algorithm):
    """A NaN input must reach the output (and the loss) rather than be clamped to 0 by ReLU."""
    x = np.ones((2, 6, 6, 4), np.float32)
    x[1, 2, 3, 0] = np.nan
    w = -np.ones((3, 3, 4, 8), np.float32)  # every finite output is negative -> ReLU gives 0
    y = np.empty((2, 4, 4, 8), np.float32)
    previous = _core.conv2d_algorithm()
    try:
        _core.set_conv2d_algorithm(algorithm)
        _core.conv2d_forward(y, x, w, None, 1, 1, 0, 0, 1, activation="relu")
    finally:
        _core.set_conv2d_algorithm(previous)
    assert np.all(y[0] == 0)
    assert np.isnan(y[1]).any() and not np.isnan(y[1, 3, 0]).any()
