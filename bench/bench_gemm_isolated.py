"""SGEMM at several threads with each contender alone in its own process.

    OMP_PROC_BIND=close env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m bench.bench_gemm_isolated

A cross-check of bench_gemm: every contender runs in a fresh process that imports only its own
library (no other thread pool waiting beside it); processes alternate for several rounds and
the median GFLOP/s per shape is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, sys, time
# The parent's OpenMP runtime bound its main thread to one core (OMP_PROC_BIND), and a child
# inherits that mask: give the child every core before any library starts its threads.
os.sched_setaffinity(0, range(os.cpu_count()))
import numpy as np
contender, threads, shapes = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
if contender == "cnnfast":
    from cnnfast import _core
    _core.set_num_threads(threads)
elif contender == "torch":
    import torch
    torch.set_num_threads(threads)
else:
    import threadpoolctl
    threadpoolctl.threadpool_limits(threads)
rng = np.random.default_rng(0)
out = {}
for label, m, n, k, ta, tb in shapes:
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    c = np.empty((m, n), np.float32)
    if contender == "cnnfast":
        fn = lambda: _core.sgemm(c, a, b, ta, tb)
    elif contender == "torch":
        at, bt, ct = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
        at, bt = (at.T if ta else at), (bt.T if tb else bt)
        fn = lambda: torch.matmul(at, bt, out=ct)
    else:
        ao, bo = (a.T if ta else a), (b.T if tb else b)
        fn = lambda: np.matmul(ao, bo, out=c)
    fn(); fn()
    times = []
    start = time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < 0.3:
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    times.sort()
    out[label] = 2.0 * m * n * k / times[len(times) // 2] / 1e9
print(json.dumps(out))
"""


def rows(threads: int, rounds: int = 3) -> list[list]:
    from bench.bench_gemm import CONV, SQUARES
    from bench.common import require_bench_extra

    require_bench_extra()  # the NumPy child limits its BLAS threads with threadpoolctl

    shapes = [list(s) for s in SQUARES + CONV]
    contenders = ["cnnfast", "numpy"]
    try:
        import torch  # noqa: F401

        contenders.append("torch")
    except ImportError:
        pass
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    results: dict[str, dict[str, list[float]]] = {c: {} for c in contenders}
    for _ in range(rounds):
        for c in contenders:
            proc = subprocess.run([sys.executable, "-c", CHILD, c, str(threads), json.dumps(shapes)],
                                  env=env, capture_output=True, text=True, check=True, cwd=ROOT)
            for label, gf in json.loads(proc.stdout.strip().splitlines()[-1]).items():
                results[c].setdefault(label, []).append(gf)
    out = []
    for label, *_ in shapes:
        gf = {c: statistics.median(results[c][label]) for c in contenders}
        t = gf.get("torch")
        out.append([f"sgemm {label} ({threads}T, isolated)", "GFLOP/s", gf["cnnfast"], t,
                    gf["numpy"], gf["cnnfast"] / t if t else None, gf["cnnfast"] / gf["numpy"]])
        print(out[-1], flush=True)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    from bench.common import HEADER_ROW, environment, markdown_table

    print("\n".join(environment()))
    table = []
    for t in (int(x) for x in args.threads.split(",")):
        table += rows(t, args.rounds)
    print(markdown_table(HEADER_ROW, table))


if __name__ == "__main__":
    main()
