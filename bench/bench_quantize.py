"""int8 inference throughput at batch 128: cnnfast.quantize against FP32 and onnxruntime.

    python -m bench quantize [--threads 1,2]        (the section of python -m bench)
    python -m bench.bench_quantize [--threads 2] [--rounds 7] [--quick]

For each model (the zoo's Keras MNIST CNN and LeNet-5 on 28x28 MNIST images, Glorot weights)
four contenders run the same batch of 128 images of the embedded MNIST sample, alternating
round by round (bench.common.time_rounds, blocks of calls):

- ``cnnfast fp32``: ``model.predict(x, batch_size=128)``;
- ``cnnfast int8``: ``cnnfast.quantize(model, calibration)`` then ``predict`` the same way
  (for LeNet-5 also with ``skip=["c1"]``, its first convolution kept in float32);
- ``onnxruntime fp32``: the model exported by ``cnnfast.export_onnx``;
- ``onnxruntime int8``: that export, pre-processed (``quant_pre_process``), quantized by
  onnxruntime's own static quantization (``quantize_static``, QDQ format, per-channel int8 weights, uint8 activations, min/max
  calibration on the same 500 images), run by the same onnxruntime session options.

Images per second, and ratios: cnnfast int8 against cnnfast fp32 (issue 23 asks for >= 2x)
and against onnxruntime int8 (>= 1x). The int8 rows also give top-1 agreement with cnnfast fp32
on the timed batch (the weights are untrained, so this shows the quantization is sane, not an
accuracy).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

import cnnfast as cf
from bench.common import (
    SETTLE_SECONDS,
    environment,
    markdown_table,
    median,
    set_threads,
    time_rounds,
)

HEADER = ["benchmark", "unit", "value", "x cnnfast fp32", "x onnxruntime int8", "top-1 = fp32"]
BATCH = 128
CALIBRATION = 500
MODELS = {"keras_mnist_cnn": lambda: cf.models.keras_mnist_cnn(),
          "lenet5": lambda: cf.models.lenet5((28, 28, 1))}
# Layers an extra contender keeps in float32 (cnnfast.quantize(skip=...)): LeNet-5's first
# convolution, one input channel and six filters, where int8 does not pay.
SKIP = {"lenet5": ["c1"]}


def _images() -> np.ndarray:
    (x, _), _ = cf.datasets.mnist.load_data(sample=True)
    return (x.astype(np.float32) / 255.0)[..., None]


def _onnxruntime_sessions(model, calibration: np.ndarray, threads: int, tmp: str):
    """(fp32 session, int8 QDQ session), or None without onnxruntime."""
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        print("onnxruntime rows skipped: pip install onnxruntime onnx", file=sys.stderr)
        return None

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": calibration[i:i + 1]}
                                 for i in range(len(calibration))])

        def get_next(self):
            return next(self.batches, None)

    fp32_path = os.path.join(tmp, "model.onnx")
    prepared = os.path.join(tmp, "model-prepared.onnx")
    int8_path = os.path.join(tmp, "model-int8.onnx")
    cf.export_onnx(model, fp32_path)
    # onnxruntime's recommended pre-processing (shape inference, graph optimisation) first.
    quant_pre_process(fp32_path, prepared)
    quantize_static(prepared, int8_path, Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return tuple(ort.InferenceSession(p, options, providers=["CPUExecutionProvider"])
                 for p in (fp32_path, int8_path))


def bench(name: str, threads: int, rounds: int, block_seconds: float) -> list[list]:
    cf.set_seed(0)
    model = MODELS[name]()
    model.build()
    images = _images()
    x = np.ascontiguousarray(images[:BATCH])
    calibration = np.ascontiguousarray(images[-CALIBRATION:])
    q = cf.quantize(model, calibration)
    fns = {"cnnfast fp32": lambda: model.predict(x, batch_size=BATCH),
           "cnnfast int8": lambda: q.predict(x, batch_size=BATCH)}
    fp32_top = model.predict(x, batch_size=BATCH).argmax(1)
    agree = {"cnnfast int8": np.mean(q.predict(x, batch_size=BATCH).argmax(1) == fp32_top)}
    if name in SKIP:
        label = f"cnnfast int8, {'+'.join(SKIP[name])} fp32"
        qs = cf.quantize(model, calibration, skip=SKIP[name])
        fns[label] = lambda: qs.predict(x, batch_size=BATCH)
        agree[label] = np.mean(qs.predict(x, batch_size=BATCH).argmax(1) == fp32_top)
    with tempfile.TemporaryDirectory() as tmp:
        sessions = _onnxruntime_sessions(model, calibration, threads, tmp)
    if sessions is not None:
        ort_fp32, ort_int8 = sessions
        feed = {"input": x}
        # fp32 against fp32: the same model, other summation orders.
        np.testing.assert_allclose(ort_fp32.run(None, feed)[0], model.predict(x), rtol=1e-4,
                                   atol=1e-5)
        fns["onnxruntime fp32"] = lambda: ort_fp32.run(None, feed)
        fns["onnxruntime int8"] = lambda: ort_int8.run(None, feed)
        agree["onnxruntime int8"] = np.mean(ort_int8.run(None, feed)[0].argmax(1) == fp32_top)
    # On several threads each turn starts after a settle: an idle pool (onnxruntime's, the
    # OpenMP runtime's) keeps spinning on the cores after its call returns and would slow the
    # next contender (bench_onnx measured 1.5-3x).
    times = time_rounds(fns, rounds=rounds, block_seconds=block_seconds,
                        settle=SETTLE_SECONDS if threads > 1 else 0.0)
    rate = {k: BATCH / median(v) for k, v in times.items()}
    rows = []
    for contender, r in rate.items():
        ort = rate.get("onnxruntime int8")
        top1 = agree.get(contender)
        rows.append([f"{name} b{BATCH} {contender} ({threads}T)", "images/s", r,
                     r / rate["cnnfast fp32"], r / ort if ort else "",
                     "" if top1 is None else f"{top1:.1%}"])
    return rows


def rows(threads: int, rounds: int = 7, block_seconds: float = 0.2) -> list[list]:
    """Rows for `python -m bench quantize` (HEADER)."""
    set_threads(threads)
    out = []
    for name in MODELS:
        out += bench(name, threads, rounds, block_seconds)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="2", help="comma-separated thread counts")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 rounds of short blocks")
    args = parser.parse_args(argv)
    print("\n".join(environment()))
    print(f"int8 GEMM path: {cf._core.gemm_u8s8_path()}")
    rounds, block = (3, 0.05) if args.quick else (args.rounds, 0.2)
    table = []
    for t in (int(v) for v in args.threads.split(",")):
        table += rows(t, rounds, block)
    print(markdown_table(HEADER, table))


if __name__ == "__main__":
    main()
