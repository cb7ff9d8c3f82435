"""Batch-1 inference latency of an exported model: onnxruntime vs cnnfast.

    python -m bench.bench_onnx [--threads 1] [--rounds 200] [--model lenet5]

Exports the zoo model with ``cnnfast.export_onnx``, checks that onnxruntime and
``model.predict`` agree, then times one-image inference, alternating the contenders each
round in blocks of calls after a settle (bench.common.time_rounds) and reporting medians and
minima in microseconds:

- ``cnnfast predict``: ``model.predict(x)`` (the public API, input checks included)
- ``cnnfast call``: ``model(x)``, the forward pass with less wrapping
- ``onnxruntime``: ``InferenceSession.run`` with intra-op and inter-op threads set to --threads
  and sequential execution
- ``C API``: ``cnnfast_model_predict`` on a model file loaded by ``cnnfast_model_load``, called
  through ctypes (which adds about a microsecond per call)
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import tempfile

import numpy as np

import cnnfast as cf
from bench.common import SETTLE_SECONDS, environment, markdown_table, median, time_rounds

HEADER = ["model", "contender", "threads", "median us", "min us", "x cnnfast predict"]


def _c_api_predict(model, path: str, x: np.ndarray):
    """A callable running cnnfast_model_predict on x through ctypes, or None without libcnnfast."""
    lib_path = os.path.join(os.path.dirname(cf.__file__), "lib", "libcnnfast.so")
    if not os.path.exists(lib_path):
        print(f"C API not benchmarked: {lib_path} not built", file=sys.stderr)
        return None
    lib = ctypes.CDLL(lib_path)
    lib.cnnfast_model_load.restype = ctypes.c_void_p
    lib.cnnfast_model_load.argtypes = [ctypes.c_char_p]
    lib.cnnfast_model_predict.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                          ctypes.c_void_p]
    lib.cnnfast_last_error.restype = ctypes.c_char_p
    lib.cnnfast_set_num_threads(cf.get_num_threads())
    model.save(path)
    handle = lib.cnnfast_model_load(path.encode())
    if not handle:
        raise RuntimeError(lib.cnnfast_last_error().decode())
    out = np.empty((1,) + model.output_shape_, np.float32)
    x_ptr, out_ptr = x.ctypes.data, out.ctypes.data
    lib.cnnfast_model_predict(handle, x_ptr, 1, out_ptr)
    np.testing.assert_array_equal(out, model.predict(x))  # same executor, same kernels
    # The closure holds `out` itself, not only its address: freed, the next call wrote into the
    # heap (VGG16 at 224x224 aborted in malloc; smaller outputs went unnoticed).
    return lambda out=out: lib.cnnfast_model_predict(handle, x_ptr, 1, out_ptr)


# Models beyond the zoo's defaults: VGG16 on CIFAR-10 images, as bench_train trains it.
EXTRA_MODELS = {
    "vgg16_cifar": lambda: cf.models.vgg16(input_shape=(32, 32, 3), classes=10, fc_units=512),
}


def weights_read_floor(model) -> None:
    """Prints the time one core takes to read the model's float32 weights once (np.max over a
    copy of them all, which a batch-1 forward must at least stream from memory when they do
    not fit the caches): a floor under any contender's one-thread latency. np.max streams
    faster than np.sum's pairwise additions did (which gave stop 26 a floor too high), and a
    sequential AVX-512 read faster still (dev/weight_streaming.cpp), so the rate printed is a
    lower bound on what one core can read."""
    flat = np.concatenate([np.ravel(w) for w in model.get_weights()]).astype(np.float32)
    t = min(time_rounds({"read": lambda: np.max(flat)}, rounds=20)["read"])
    print(f"weights {flat.nbytes / 1e6:.1f} MB: one core reads them in {t * 1e3:.3f} ms "
          f"({flat.nbytes / t / 1e9:.1f} GB/s)", flush=True)


def rows(threads: int = 1, rounds: int = 15, model_name: str = "lenet5") -> list[list]:
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime is not installed (pip install onnxruntime onnx)", file=sys.stderr)
        return []
    cf.set_num_threads(threads)
    cf.set_seed(0)
    model = EXTRA_MODELS[model_name]() if model_name in EXTRA_MODELS else cf.models.get(model_name)
    model.build()
    x = np.random.default_rng(0).standard_normal((1,) + model.input_shape_).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{model_name}.onnx")
        cf.export_onnx(model, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        capi = _c_api_predict(model, os.path.join(tmp, f"{model_name}.cnnfast"), x)
    feed = {"input": x}
    # fp32, different summation order: agreement to ~1e-6 on softmax outputs.
    np.testing.assert_allclose(session.run(None, feed)[0], model.predict(x), rtol=1e-4, atol=1e-5)
    fns = {
        "cnnfast predict": lambda: model.predict(x),
        "cnnfast call": lambda: model(x),
        "onnxruntime": lambda: session.run(None, feed),
    }
    if capi is not None:
        fns["C API"] = capi
    # Turns are blocks of calls (0.05 s), on several threads each after a settle: an idle
    # thread pool keeps spinning on the cores after its call returns (onnxruntime's, cnnfast's
    # OpenMP), which on two threads made single timed calls read 1.5-3x their quiet time. (On
    # one thread there is no pool, and a pause only slows the first calls after it.)
    times = time_rounds(fns, rounds=rounds, settle=SETTLE_SECONDS if threads > 1 else 0.0,
                        block_seconds=0.05)
    weights_read_floor(model)
    base = median(times["cnnfast predict"])
    out = []
    for name, ts in times.items():
        out.append([model_name, name, threads, median(ts) * 1e6, min(ts) * 1e6, base / median(ts)])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--model", default="lenet5",
                        choices=[*cf.models.names(), *EXTRA_MODELS])
    args = parser.parse_args(argv)
    print("\n".join(environment()))
    print(markdown_table(HEADER, rows(args.threads, args.rounds, args.model)))


if __name__ == "__main__":
    main()
