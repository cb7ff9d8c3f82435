"""Per-step times of a zoo model's batch-1 predict: the inference plan's steps (one C++ call),
each timed inside the call.

    OMP_PROC_BIND=close PYTHONPATH=. python dev/network_step_times.py vgg16_cifar [--calls 1000]

Runs the network that `model.predict` runs (its weights compared with each kept Winograd
kernel's source on every call; the C API's network, on fixed weights, skips that) and prints,
per step of `describe()`, the mean microseconds over the calls, after warm-up calls that make
the kept kernels. The steps' sum is a little under predict's time, which adds the input checks
and the Python call.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import cnnfast as cf
from dev.profile_step import MODELS


def print_step_times(net, x: np.ndarray, out_shape: tuple, calls: int) -> None:
    """Network `net`'s forward of x, `calls` times after 3 warm-up calls: per step of
    `describe()`, the mean microseconds (timed inside the one C++ call), then the whole call's."""
    out = np.empty((len(x),) + tuple(out_shape), np.float32)
    for _ in range(3):
        net.forward(out, x)
    steps = net.describe()
    seconds = np.zeros(len(steps))
    start = time.perf_counter()
    for _ in range(calls):
        net.forward(out, x, step_seconds=seconds)
    total = (time.perf_counter() - start) / calls
    for i, (line, s) in enumerate(zip(steps, seconds / calls)):
        print(f"{i:3d} {s * 1e6:9.1f} us  {line}")
    print(f"steps {seconds.sum() / calls * 1e6:.1f} us of {total * 1e6:.1f} us per forward of "
          f"{len(x)} image(s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    cf.set_num_threads(args.threads)
    cf.set_seed(0)
    model = MODELS[args.model][0]()
    model.build()
    x = np.random.default_rng(0).random((1,) + model.input_shape_, dtype=np.float32)
    for _ in range(3):  # kept kernels, buffers, page faults
        model.predict(x)
    print(f"{args.threads} thread(s)")
    print_step_times(model._inference_network(), x, model.output_shape_, args.calls)


if __name__ == "__main__":
    main()
