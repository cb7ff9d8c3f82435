"""Time cnnfast conv2d forward and forward+backward against PyTorch (oneDNN, channels_last).

    PYTHONPATH=. OMP_PROC_BIND=close python bench/bench_conv.py [--threads 2 1] [--rounds 15]

For each layer of the classic CNNs (Keras MNIST CNN, LeNet-5, VGG) and each thread count, prints
milliseconds per pass and GFLOP/s (2*N*OH*OW*K*KH*KW*C/groups per pass; forward+backward counts
three passes: forward, backward-data, backward-weights) for cnnfast and PyTorch, and the ratio
torch/cnnfast (> 1: cnnfast is faster). The contenders alternate call by call in every round, so
both see the same machine load; the medians of the rounds are reported. PyTorch's backward is one
`convolution_backward` call computing dx, dw and db together; ours is conv2d_backward_weights then
conv2d_backward_data. `--passes` adds the individual backward passes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnfast import _core
from cnnfast.ops.conv import conv2d_geometry

# name, (N, H, W, C), (KH, KW, K), strides, padding, groups
SHAPES = [
    ("keras conv1 b128", (128, 28, 28, 1), (3, 3, 64), 1, "valid", 1),
    ("keras conv2 b128", (128, 13, 13, 64), (3, 3, 64), 1, "valid", 1),
    ("lenet C1 b128", (128, 32, 32, 1), (5, 5, 6), 1, "valid", 1),
    ("lenet C1 b32", (32, 32, 32, 1), (5, 5, 6), 1, "valid", 1),
    ("lenet C3 b128", (128, 14, 14, 6), (5, 5, 16), 1, "valid", 1),
    ("lenet C3 b32", (32, 14, 14, 6), (5, 5, 16), 1, "valid", 1),
    ("vgg 64->64 32x32 b64", (64, 32, 32, 64), (3, 3, 64), 1, "same", 1),
    ("vgg 128->128 16x16 b64", (64, 16, 16, 128), (3, 3, 128), 1, "same", 1),
    ("lenet C1 b1 (latency)", (1, 32, 32, 1), (5, 5, 6), 1, "valid", 1),
]


def time_rounds(fns, rounds, min_seconds):
    """Seconds per call of each function; the functions take turns every round."""
    for fn in fns:
        fn()  # warm-up: scratch buffers, page faults, thread pools
        fn()
    times = [[] for _ in fns]
    start = time.perf_counter()
    r = 0
    while r < rounds or (time.perf_counter() - start < min_seconds and r < 2000):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        r += 1
    return [statistics.median(ts) for ts in times]


def cnnfast_passes(x, w, b, dy, geo, groups, activation):
    _, (sh, sw), (pt, pl) = geo
    y = np.empty(dy.shape, np.float32)
    dx = np.empty_like(x)
    dw = np.empty_like(w)
    db = np.empty_like(b)
    kw = {"activation": activation} if activation != "linear" else {}

    def fwd():
        _core.conv2d_forward(y, x, w, b, sh, sw, pt, pl, groups, **kw)

    def bwd_data():
        _core.conv2d_backward_data(dx, dy, w, sh, sw, pt, pl, groups)

    def bwd_weights():
        _core.conv2d_backward_weights(dw, db, x, dy, sh, sw, pt, pl, groups)

    def fwd_bwd():
        fwd()
        bwd_weights()
        bwd_data()

    return {"forward": fwd, "fwd+bwd": fwd_bwd, "bwd data": bwd_data, "bwd weights": bwd_weights}


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

    def fwd_bwd():
        fwd()
        bwd([True, True, True])

    assert fwd().shape == tdy.shape
    return {
        "forward": fwd,
        "fwd+bwd": fwd_bwd,
        "bwd data": lambda: bwd([True, False, False]),
        "bwd weights": lambda: bwd([False, True, True]),
    }


def measure(threads, torch, rounds=15, min_seconds=0.3, passes=("forward", "fwd+bwd"),
            activation="linear", only=""):
    """Yield (layer, pass, our seconds, torch seconds or None, flop) for each layer and pass."""
    rng = np.random.default_rng(0)
    _core.set_num_threads(threads)
    if torch:
        torch.set_num_threads(threads)
    try:
        for name, xs, (KH, KW, K), strides, padding, groups in SHAPES:
            if only and only not in name:
                continue
            N, _, _, C = xs
            geo = conv2d_geometry(xs, (KH, KW, C // groups, K), strides, padding, groups)
            (OH, OW) = geo[0]
            x = rng.standard_normal(xs, dtype=np.float32)
            w = rng.standard_normal((KH, KW, C // groups, K), dtype=np.float32)
            b = rng.standard_normal(K, dtype=np.float32)
            dy = rng.standard_normal((N, OH, OW, K), dtype=np.float32)
            flop = 2.0 * N * OH * OW * K * KH * KW * (C // groups)
            ours = cnnfast_passes(x, w, b, dy, geo, groups, activation)
            theirs = torch_passes(torch, x, w, b, dy, geo, groups) if torch else {}
            for p in passes:
                if N == 1 and p != "forward":
                    continue
                fns = [ours[p]] + ([theirs[p]] if p in theirs else [])
                t, *tt = time_rounds(fns, rounds, min_seconds)
                yield name, p, t, (tt[0] if tt else None), flop * (3 if p == "fwd+bwd" else 1)
    finally:
        _core.set_num_threads(0)


def rows(threads: int) -> list[list]:
    """Rows for `python -m bench`: GFLOP/s of each layer's forward and forward+backward."""
    try:
        import torch
    except ImportError:
        torch = None
    out = []
    for name, p, t, tt, fl in measure(threads, torch):
        ours, theirs = fl / t / 1e9, (fl / tt / 1e9 if tt else None)
        out.append([f"conv {name} {p} ({threads}T)", "GFLOP/s", ours, theirs, None,
                    ours / theirs if theirs else None, None])
        print(out[-1], flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--min-seconds", type=float, default=0.3, help="per pass, keep rounding until")
    ap.add_argument("--passes", action="store_true", help="also time the backward passes alone")
    ap.add_argument("--activation", default="linear", help="fused activation of our forward")
    ap.add_argument("--only", default="", help="substring filter on the layer names")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            pass
    print(
        f"sgemm path {_core.sgemm_simd_path()}, conv2d algorithm {_core.conv2d_algorithm()}"
        + (f", torch {torch.__version__}" if torch else ", torch not importable")
    )
    passes = ["forward", "fwd+bwd"] + (["bwd data", "bwd weights"] if args.passes else [])
    header = f"{'layer':24s} {'thr':>3s} {'pass':11s} {'ours ms':>9s} {'GFLOP/s':>8s}"
    if torch:
        header += f" {'torch ms':>9s} {'GFLOP/s':>8s} {'torch/ours':>10s}"
    print(header)
    fmt = lambda t: f"{t * 1e3:9.3f}" if t > 1e-3 else f"{t * 1e6:7.1f}us"
    for threads in args.threads:
        for name, p, t, tt, fl in measure(threads, torch, args.rounds, args.min_seconds, passes,
                                          args.activation, args.only):
            line = f"{name:24s} {threads:3d} {p:11s} {fmt(t)} {fl / t / 1e9:8.1f}"
            if tt:
                line += f" {fmt(tt)} {fl / tt / 1e9:8.1f} {tt / t:10.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
