"""Where a training step goes: the time of each layer kind's forward and backward.

    OMP_PROC_BIND=close python -m bench.profile_layers [resnet20] [--batch 128] [--threads 1]

Times the Python reference walk (the same kernels the C++ train plan calls, layer by layer,
with each layer's forward and backward wrapped in a timer) over 3 steps after a warm-up, and
prints milliseconds per step by layer kind, then the whole walk step and the train plan's step.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np

import cnnfast as cf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="resnet20")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    cf.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, args.batch)

    def compiled(python: bool) -> cf.Model:
        cf.set_seed(0)
        model = getattr(cf.models, args.model)((32, 32, 3))
        model.compile(cf.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
        model._force_python_training = python
        model.train_on_batch(x, y)
        return model

    walk = compiled(True)
    spent: dict[tuple[str, str], float] = defaultdict(float)
    for layer in {id(layer): layer for layer in walk.layers}.values():
        for which in ("forward", "backward"):
            method = getattr(layer, which)

            key = (type(layer).__name__, which)

            def timed(*a, _method=method, _key=key, **k):
                t = time.perf_counter()
                out = _method(*a, **k)
                spent[_key] += time.perf_counter() - t
                return out

            setattr(layer, which, timed)
    t = time.perf_counter()
    for _ in range(3):
        walk.train_on_batch(x, y)
    walk_ms = (time.perf_counter() - t) / 3 * 1e3
    kinds = sorted({k for k, _ in spent}, key=lambda k: -(spent[k, "forward"] + spent[k, "backward"]))
    print(f"{args.model}, batch {args.batch}, {args.threads} thread(s): ms per step")
    for kind in kinds:
        print(f"  {kind:<24} forward {spent[kind, 'forward'] / 3 * 1e3:7.1f}   "
              f"backward {spent[kind, 'backward'] / 3 * 1e3:7.1f}")
    plan = compiled(False)
    t = time.perf_counter()
    for _ in range(3):
        plan.train_on_batch(x, y)
    print(f"  Python walk step {walk_ms:.1f}; train plan step "
          f"{(time.perf_counter() - t) / 3 * 1e3:.1f}")


if __name__ == "__main__":
    main()
