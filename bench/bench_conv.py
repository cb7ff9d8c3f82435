"""Time cnnfast conv2d forward / backward-data / backward-weights against PyTorch (channels_last).

    PYTHONPATH=. OMP_PROC_BIND=close python bench/bench_conv.py [--threads 2] [--repeat 20]

Prints milliseconds and GFLOP/s (2*N*OH*OW*K*KH*KW*C/groups per pass) for each shape; PyTorch
runs with the same thread count when it is importable. The two contenders alternate run by run,
so both see the same machine load, and the best of --repeat runs is reported: on a shared
2-core machine, other processes only ever add time, so the minimum is the stable statistic.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cnnfast import _core
from cnnfast.ops.conv import conv2d_geometry

# name, (N, H, W, C), (KH, KW, K), strides, padding, groups
SHAPES = [
    ("keras-mnist conv2", (128, 13, 13, 64), (3, 3, 64), 1, "valid", 1),
    ("keras-mnist conv1", (128, 28, 28, 1), (3, 3, 32), 1, "valid", 1),
    ("keras-cnn 26->24", (128, 26, 26, 32), (3, 3, 64), 1, "valid", 1),
    ("vgg-cifar 3x3 same", (32, 32, 32, 64), (3, 3, 64), 1, "same", 1),
    ("1x1 256->128", (64, 14, 14, 256), (1, 1, 128), 1, "valid", 1),
    ("5x5 s2 same", (64, 28, 28, 16), (5, 5, 32), 2, "same", 1),
]


def best_times(fns, repeat):
    """Best-of-`repeat` seconds of each function, calling them in turn each round."""
    for fn in fns:
        fn()  # warm-up: scratch buffers, page faults, thread pools
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [min(ts) for ts in times]


def cnnfast_passes(x, w, b, dy, geo, groups):
    _, (sh, sw), (pt, pl) = geo
    y = np.empty(dy.shape, np.float32)
    dx = np.empty_like(x)
    dw = np.empty_like(w)
    db = np.empty_like(b)
    return {
        "forward": lambda: _core.conv2d_forward(y, x, w, b, sh, sw, pt, pl, groups),
        "backward data": lambda: _core.conv2d_backward_data(dx, dy, w, sh, sw, pt, pl, groups),
        "backward weights": lambda: _core.conv2d_backward_weights(
            dw, db, x, dy, sh, sw, pt, pl, groups
        ),
    }


def torch_passes(torch, x, w, b, dy, geo, groups):
    F = torch.nn.functional
    (OH, OW), (sh, sw), (pt, pl) = geo
    cl = torch.channels_last
    tx = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=cl)
    tw = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous(memory_format=cl)  # (K, C/g, KH, KW)
    tb = torch.from_numpy(b)
    tdy = torch.from_numpy(dy).permute(0, 3, 1, 2).contiguous(memory_format=cl)
    KH, KW = w.shape[:2]
    # Torch pads symmetrically: for "same" with an odd total, pad the input beforehand
    # (TensorFlow puts the extra row/column at the bottom/right).
    pb = max((OH - 1) * sh + KH - x.shape[1] - pt, 0)
    pr = max((OW - 1) * sw + KW - x.shape[2] - pl, 0)
    if pb != pt or pr != pl:
        tx = F.pad(tx, (pl, pr, pt, pb)).contiguous(memory_format=cl)
        pad = [0, 0]
    else:
        pad = [pt, pl]

    def fwd():
        with torch.no_grad():
            return F.conv2d(tx, tw, tb, (sh, sw), pad, 1, groups)

    def bwd(mask):
        with torch.no_grad():
            return torch.ops.aten.convolution_backward(
                tdy, tx, tw, [tw.shape[0]], [sh, sw], pad, [1, 1], False, [0, 0], groups, mask
            )

    assert fwd().shape == tdy.shape
    return {
        "forward": fwd,
        "backward data": lambda: bwd([True, False, False]),
        "backward weights": lambda: bwd([False, True, True]),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=0, help="0: cnnfast's default")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    if args.threads > 0:
        _core.set_num_threads(args.threads)
    threads = _core.get_num_threads()
    torch = None
    if not args.no_torch:
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:
            pass
    print(
        f"threads {threads}, sgemm path {_core.sgemm_simd_path()}"
        + (f", torch {torch.__version__}" if torch else ", torch not importable")
    )
    rng = np.random.default_rng(0)
    header = f"{'shape':22s} {'pass':17s} {'cnnfast ms':>10s} {'GFLOP/s':>8s}"
    if torch:
        header += f" {'torch ms':>9s} {'GFLOP/s':>8s} {'torch/ours':>10s}"
    print(header)
    for name, xs, (KH, KW, K), strides, padding, groups in SHAPES:
        N, _, _, C = xs
        geo = conv2d_geometry(xs, (KH, KW, C // groups, K), strides, padding, groups)
        (OH, OW) = geo[0]
        x = rng.standard_normal(xs, dtype=np.float32)
        w = rng.standard_normal((KH, KW, C // groups, K), dtype=np.float32)
        b = rng.standard_normal(K, dtype=np.float32)
        dy = rng.standard_normal((N, OH, OW, K), dtype=np.float32)
        flop = 2.0 * N * OH * OW * K * KH * KW * (C // groups)
        ours = cnnfast_passes(x, w, b, dy, geo, groups)
        theirs = torch_passes(torch, x, w, b, dy, geo, groups) if torch else {}
        for p, fn in ours.items():
            fns = [fn] + ([theirs[p]] if p in theirs else [])
            t, *tt = best_times(fns, args.repeat)
            line = f"{name:22s} {p:17s} {t * 1e3:10.3f} {flop / t / 1e9:8.1f}"
            if tt:
                line += f" {tt[0] * 1e3:9.3f} {flop / tt[0] / 1e9:8.1f} {tt[0] / t:10.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
