"""SGEMM throughput: cnnfast against NumPy's BLAS and PyTorch, in one run, same buffers.

Usage (pin threads; let OpenBLAS pick its own kernel for this CPU):
    OMP_PROC_BIND=close env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_gemm.py

Prints GFLOP/s (median of repeated calls, the contenders alternating in blocks of calls on the
same operands) and cnnfast's ratio to each contender, for 1 and 2 threads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import SETTLE_SECONDS, require_bench_extra, time_rounds
from cnnfast import _core

try:
    import threadpoolctl
except ImportError:
    threadpoolctl = None
try:
    import torch
except ImportError:
    torch = None

# (label, M, N, K, trans_a, trans_b)
SQUARES = [(f"square {n}", n, n, n, False, False) for n in (256, 512, 1024, 1536, 2048)]
CONV = [
    # im2col forward products: (batch*OH*OW, C_out) = (batch*OH*OW, KH*KW*C_in) @ (.., C_out)
    ("conv 128x11x11 3x3x64->64", 128 * 11 * 11, 64, 576, False, False),
    ("conv 64x32x32 3x3x64->64", 64 * 32 * 32, 64, 576, False, False),
    ("conv 64x16x16 3x3x128->128", 64 * 16 * 16, 128, 1152, False, False),
    # weight gradient of the first: cols^T @ dY
    ("conv dW 576x64 (K=15488)", 576, 64, 128 * 11 * 11, True, False),
    # data gradient of the first: dY @ W^T
    ("conv dX 15488x576 (K=64)", 128 * 11 * 11, 576, 64, False, True),
]


# Contenders alternate in blocks of calls, round after round: a noisy spell on this shared VM
# then hits every contender about equally. With one block per contender a spell could spoil a
# whole row for one of them (a 2T 256^2 row once read 0.75x torch and 0.98x numpy, where rows
# timed in alternating blocks read 1.2x numpy).
ROUNDS = 5


def blas_limits(threads: int):
    if threadpoolctl is None:  # NumPy would run on every core: stop (bench.common)
        require_bench_extra()
    return threadpoolctl.threadpool_limits(limits=threads, user_api="blas")


def bench_shape(rng, heads, m, n, k, ta, tb, min_reps, min_time, threads) -> dict[str, float]:
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    c = np.empty((m, n), np.float32)
    a_op, b_op = (a.T if ta else a), (b.T if tb else b)
    fns = {
        "cnnfast": lambda: _core.sgemm(c, a, b, ta, tb),
        "numpy": lambda: np.matmul(a_op, b_op, out=c),
    }
    if torch is not None:
        ta_t, tb_t, tc_t = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
        a_t, b_t = (ta_t.T if ta else ta_t), (tb_t.T if tb else tb_t)
        fns["torch"] = lambda: torch.matmul(a_t, b_t, out=tc_t)
    flop = 2.0 * m * n * k
    # Only multi-threaded pools spin after a call: one thread needs no settling.
    settle = SETTLE_SECONDS if threads > 1 else 0.0
    times = time_rounds({h: fns[h] for h in heads}, rounds=ROUNDS, settle=settle,
                        block_seconds=min_time / ROUNDS, block_calls=-(-min_reps // ROUNDS))
    return {h: flop / statistics.median(times[h]) / 1e9 for h in heads}


def run(shapes, threads: int, min_reps: int, min_time: float) -> None:
    rng = np.random.default_rng(0)
    _core.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    heads = ["cnnfast", "numpy"] + (["torch"] if torch is not None else [])
    print(f"\n== {threads} thread(s): GFLOP/s (median) and cnnfast / other ==")
    cols = "".join(f"{h:>10}" for h in heads)
    ratios = "".join(f"{'/' + h:>10}" for h in heads[1:])
    print(f"{'problem':<30}{'M':>7}{'N':>6}{'K':>7}{cols}{ratios}")
    for label, m, n, k, ta, tb in shapes:
        with blas_limits(threads):
            gf = bench_shape(rng, heads, m, n, k, ta, tb, min_reps, min_time, threads)
        row = "".join(f"{gf[h]:10.1f}" for h in heads)
        row += "".join(f"{gf['cnnfast'] / gf[h]:10.2f}" for h in heads[1:])
        print(f"{label:<30}{m:>7}{n:>6}{k:>7}{row}")


def rows(threads: int, min_reps: int = 5, min_time: float = 0.2) -> list[list]:
    """Table rows for `python -m bench`: [benchmark, unit, cnnfast, torch, numpy, x torch, x numpy]."""
    rng = np.random.default_rng(0)
    _core.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    heads = ["cnnfast", "numpy"] + (["torch"] if torch is not None else [])
    out = []
    if threads == 1:
        # Single-thread ceilings, each the median of 5 measurements:
        # - the yardstick for "% of peak": this core's measured FMA throughput right now, on the
        #   same SIMD path as cnnfast's GEMM (a VM's nominal clock says little);
        # - the packed route's ceiling: its micro-kernel loop alone, operands packed and in
        #   cache; what sgemm loses below it is packing and the memory traffic of A, B and C;
        # - the same loop with its operands and C all in L1: the instruction mix's own ceiling,
        #   with no cache level to wait on.
        for label, measure in [
            ("FMA peak, measured (1T)", _core.measure_fma_peak_gflops),
            ("sgemm micro-kernel loop, packed operands in cache (1T)",
             _core.measure_sgemm_ukernel_gflops),
            ("sgemm micro-kernel loop, operands and C in L1 (1T)",
             lambda: _core.measure_sgemm_ukernel_gflops(in_l1=True)),
        ]:
            rate = statistics.median(measure() for _ in range(5))
            out.append([label, "GFLOP/s", rate, None, None, None, None])
            print(out[-1], flush=True)
    percent_rows = []
    for label, m, n, k, ta, tb in SQUARES + CONV:
        square = (label, m, n, k, ta, tb) in SQUARES
        if threads == 1 and square:
            before = statistics.median(_core.measure_fma_peak_gflops() for _ in range(3))
        with blas_limits(threads):
            gf = bench_shape(rng, heads, m, n, k, ta, tb, min_reps, min_time, threads)
        t = gf.get("torch")
        out.append([f"sgemm {label} ({threads}T)", "GFLOP/s", gf["cnnfast"], t, gf["numpy"],
                    gf["cnnfast"] / t if t else None, gf["cnnfast"] / gf["numpy"]])
        print(out[-1], flush=True)
        if threads == 1 and square:
            # The peak row above is measured once, and this VM's FMA throughput drifts by 10%
            # between minutes; this yardstick is measured just before and after the row, and
            # the higher of the two taken (the stricter percentage).
            after = statistics.median(_core.measure_fma_peak_gflops() for _ in range(3))
            yard = max(before, after) / 100.0
            percent_rows.append([f"sgemm {label} (1T), % of the FMA peak measured beside it",
                                 "%", gf["cnnfast"] / yard, t / yard if t else None,
                                 gf["numpy"] / yard, None, None])
            print(percent_rows[-1], flush=True)
    return out + percent_rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--min-reps", type=int, default=7)
    p.add_argument("--min-time", type=float, default=0.3, help="seconds per contender and shape")
    p.add_argument("--only", choices=["squares", "conv"], default=None)
    args = p.parse_args()

    print(
        f"cnnfast sgemm path: {_core.sgemm_simd_path()}  ({_core.compiler}; "
        f"OMP_PROC_BIND={os.environ.get('OMP_PROC_BIND', '')!r})"
    )
    print(f"numpy {np.__version__}", end="")
    if threadpoolctl is not None:
        for info in threadpoolctl.threadpool_info():
            if info.get("user_api") == "blas":
                print(
                    f"; BLAS {info.get('internal_api')} {info.get('version')} "
                    f"kernel={info.get('architecture')} threads={info.get('num_threads')}",
                    end="",
                )
    else:
        print(" (install threadpoolctl to see the BLAS kernel)", end="")
    print()
    print(f"torch {torch.__version__}" if torch is not None else "torch not installed")
    shapes = {"squares": SQUARES, "conv": CONV, None: SQUARES + CONV}[args.only]
    for threads in (int(t) for t in args.threads.split(",")):
        run(shapes, threads, args.min_reps, args.min_time)


if __name__ == "__main__":
    main()
