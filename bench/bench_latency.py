"""Batch-1 inference latency: cnnfast model.predict and the raw C++ executor vs PyTorch.

    OMP_PROC_BIND=close python -m bench.bench_latency [--rounds 15] [--calls 300]

PyTorch runs the same architecture (bench_train.torch_model: channels_last, eval mode) under
torch.inference_mode. Contenders alternate round by round; each round times `calls` back-to-back
calls and the table shows the median microseconds per call over the rounds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import cnnfast as cf
from bench.bench_train import torch_model
from bench.common import environment, markdown_table, set_threads, torch
from cnnfast import models

NETWORKS = {"lenet5": models.lenet5, "keras_mnist_cnn": models.keras_mnist_cnn}


def per_call_us(fns: dict, rounds: int, calls: int) -> dict[str, float]:
    for fn in fns.values():  # warm-up: arenas, thread pools, page faults
        for _ in range(calls // 4 + 1):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - t0) / calls * 1e6)
    return {k: float(np.median(v)) for k, v in times.items()}


def bench(name: str, rounds: int, calls: int) -> dict[str, float]:
    cf.set_seed(0)
    model = NETWORKS[name]()
    model.build()
    x = np.random.default_rng(0).random((1,) + model.input_shape_, dtype=np.float32)
    net = model._inference_network()
    out = np.empty((1,) + model.output_shape_, np.float32)
    fns = {
        "predict": lambda: model.predict(x),
        "Network.forward": lambda: net.forward(out, x),
    }
    if torch is not None:
        tm = torch_model(model).eval()
        tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).contiguous(
            memory_format=torch.channels_last)

        def torch_call():
            with torch.inference_mode():
                tm(tx)

        fns["torch"] = torch_call
    return per_call_us(fns, rounds, calls)


def rows(threads: int, rounds: int = 11, calls: int = 200) -> list[list]:
    """Rows for `python -m bench latency`: [benchmark, unit, cnnfast, torch, numpy, x torch,
    x numpy], cnnfast being model.predict; the raw executor gets its own row."""
    set_threads(threads)
    out = []
    for name in NETWORKS:
        r = bench(name, rounds, calls)
        t = r.get("torch")
        out.append([f"latency {name} b1 predict ({threads}T)", "us", r["predict"], t, None,
                    t / r["predict"] if t else None, None])
        out.append([f"latency {name} b1 Network.forward ({threads}T)", "us", r["Network.forward"],
                    t, None, t / r["Network.forward"] if t else None, None])
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    args = parser.parse_args(argv)
    print("\n".join(environment()))
    rows = []
    for threads in args.threads:
        set_threads(threads)
        for name in NETWORKS:
            r = bench(name, args.rounds, args.calls)
            t = r.get("torch")
            rows.append([f"{name} b1", threads, r["predict"], r["Network.forward"], t,
                         t / r["predict"] if t else None])
            print(rows[-1], flush=True)
    print(markdown_table(["network", "threads", "predict us", "Network.forward us", "torch us",
                          "torch / predict"], rows))


if __name__ == "__main__":
    main()
