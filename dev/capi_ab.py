"""Batch-1 latency of two or more builds of cnnfast in one process, through their C APIs.

    OMP_PROC_BIND=close python dev/capi_ab.py vgg16_cifar /tmp/base /tmp/change [--rounds 40]

Each build is a source tree built in place (`cmake -S . -B build -DCNNFAST_INPLACE=ON`, or
dev/build.sh), whose cnnfast/lib/libcnnfast.so is loaded with ctypes; a zoo model, saved once by
this checkout's cnnfast, is loaded by each and run on the same image, the builds alternating
every 5 calls. On this project's shared machines the memory bandwidth and the core's speed
drift from second to second, so two builds timed in separate processes, even in turns, can
differ by as much as a change does (two copies of one build did); alternating in one process,
copies of one build agree within the noise of the medians. The outputs must agree to the bit (a change of
schedule keeps every sum's order). The C API runs fixed weights: no check of kept kernels, which
`predict` adds.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import tempfile
import time

import numpy as np

import cnnfast as cf
from dev.profile_step import MODELS


def load(tree: str, path: str, out: np.ndarray):
    lib = ctypes.CDLL(os.path.join(tree, "cnnfast", "lib", "libcnnfast.so"), mode=os.RTLD_LOCAL)
    lib.cnnfast_model_load.restype = ctypes.c_void_p
    lib.cnnfast_model_load.argtypes = [ctypes.c_char_p]
    lib.cnnfast_model_predict.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                          ctypes.c_void_p]
    lib.cnnfast_last_error.restype = ctypes.c_char_p
    lib.cnnfast_set_num_threads(1)
    handle = lib.cnnfast_model_load(path.encode())
    if not handle:
        raise SystemExit(f"{tree}: {lib.cnnfast_last_error().decode()}")
    return lambda x: lib.cnnfast_model_predict(handle, x.ctypes.data, 1, out.ctypes.data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("trees", nargs="+")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    cf.set_seed(0)
    model = MODELS[args.model][0]()
    model.build()
    path = os.path.join(tempfile.mkdtemp(), "model.cnnfast")
    model.save(path)
    x = np.random.default_rng(0).random((1,) + model.input_shape_, dtype=np.float32)
    outs = [np.empty((1,) + model.output_shape_, np.float32) for _ in args.trees]
    calls = [load(tree, path, out) for tree, out in zip(args.trees, outs)]
    for call in calls:
        call(x)
    for tree, out in zip(args.trees[1:], outs[1:]):
        if not np.array_equal(out, outs[0]):
            raise SystemExit(f"{tree} and {args.trees[0]} disagree")
    seconds: list[list[float]] = [[] for _ in calls]
    for _ in range(args.rounds):
        for call, s in zip(calls, seconds):
            start = time.perf_counter()
            for _ in range(5):
                call(x)
            s.append((time.perf_counter() - start) / 5)
    for tree, s in zip(args.trees, seconds):
        print(f"{tree}: median {np.median(s) * 1e6:,.1f} us, min {np.min(s) * 1e6:,.1f} us")


if __name__ == "__main__":
    main()
