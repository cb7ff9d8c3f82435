"""Training throughput of the C++ train plan against the Python layer walk it replaces.

    OMP_PROC_BIND=close python -m bench.bench_train_plan [--threads 1,2] [--rounds 15]

Both contenders train the same network from the same seed in one process (the walk forced
with ``model._force_python_training``), in alternating blocks of one fit epoch each, so they
see the same machine load; prints the median images per second and the ratio plan / walk.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

import cnnfast as cf
from bench.common import environment, median, set_threads, time_rounds

# (name, model, batch size, batches per timed epoch)
CASES: list[tuple[str, Callable[[], cf.Model], int, int]] = [
    ("lenet5", lambda: cf.models.lenet5((28, 28, 1)), 32, 16),
    ("keras_mnist_cnn", lambda: cf.models.keras_mnist_cnn((28, 28, 1)), 128, 4),
]


def trainer(make: Callable[[], cf.Model], x: np.ndarray, y: np.ndarray, batch: int,
            python: bool) -> Callable[[], object]:
    cf.set_seed(0)
    model = make()
    model.compile(cf.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model._force_python_training = python
    assert (model._train_plan is None) == python
    return lambda: model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="2", help="comma-separated thread counts")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print("\n".join(environment()))
    print("| network | batch | threads | plan img/s | walk img/s | plan / walk |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for threads in (int(t) for t in args.threads.split(",")):
        set_threads(threads)
        for name, make, batch, batches in CASES:
            x = rng.random((batch * batches, 28, 28, 1), dtype=np.float32)
            y = rng.integers(0, 10, batch * batches)
            fns = {"plan": trainer(make, x, y, batch, False),
                   "walk": trainer(make, x, y, batch, True)}
            times = time_rounds(fns, rounds=args.rounds)
            rate = {k: len(x) / median(v) for k, v in times.items()}
            print(f"| {name} | {batch} | {threads} | {rate['plan']:,.0f} | {rate['walk']:,.0f} | "
                  f"{rate['plan'] / rate['walk']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
