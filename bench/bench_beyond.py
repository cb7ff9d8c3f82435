"""Issue 23 ("Beyond FP32") in one command: int8 inference, FP32 batch-1 latency and bfloat16
training, each against onnxruntime or PyTorch in the same run.

    OMP_PROC_BIND=close env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m bench beyond

It prints the CPU (model name and the reduced-precision flags) and the paths cnnfast's kernels
take on it, then three tables, each for every thread count of --threads (default 1,2):

1. int8 inference at batch 128 (bench.bench_quantize): cnnfast fp32 and ``cnnfast.quantize``
   int8 against onnxruntime fp32 and onnxruntime's own static QDQ quantization.
2. FP32 batch-1 latency (bench.bench_onnx) of LeNet-5, the Keras MNIST CNN and VGG16-CIFAR:
   ``predict`` and the C API against onnxruntime on the same exported model.
3. bfloat16 training: cnnfast's FP32 training and its mixed-precision training
   (``compile(precision="bfloat16")``) beside PyTorch's FP32 and its bfloat16 autocast training
   of the same models (the goals: 1.6x cnnfast FP32 and 2x PyTorch autocast).

Writes bench/results/<machine>-beyond.md.
"""

from __future__ import annotations

import argparse
import datetime
import sys

from bench.common import (
    SETTLE_SECONDS,
    environment,
    machine_name,
    markdown_table,
    median,
    require_bench_extra,
    set_threads,
    time_rounds,
    torch,
    write_results,
)

FLAGS = ("avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")
LATENCY_MODELS = ("lenet5", "keras_mnist_cnn", "vgg16_cifar")
# name: (batch, steps per timed epoch); twelve Keras CNN steps make a timed epoch about 0.2 s, as
# two VGG16-CIFAR steps do (four were about 70 ms).
TRAINING = {"keras_mnist_cnn": (128, 12), "vgg16_cifar": (64, 2)}


def cpu_lines() -> list[str]:
    """The CPU's model name, which reduced-precision flags it has, and the kernels' paths."""
    from cnnfast import _core

    model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    have = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in FLAGS)
    paths = (f"paths: sgemm {_core.sgemm_simd_path()}, bfloat16 GEMM {_core.sgemm_bf16_path()}, "
             f"int8 GEMM {_core.gemm_u8s8_path()}, conv2d algorithm {_core.conv2d_algorithm()}")
    return [f"CPU: {model}; {have}", paths]


def torch_training(name: str, batch: int, steps: int, autocast: bool):
    """One epoch of PyTorch training of the zoo model `name` (bench.bench_train's translation
    and optimizer), in float32 or under bfloat16 autocast."""
    from bench.bench_train import NETWORKS, synthetic, torch_model, torch_training_epoch

    build, opt, _ = NETWORKS[name]
    model = build()
    model.build()
    x, _, labels = synthetic(model, batch * steps)
    tm = torch_model(model)
    topt = (torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.9) if opt == "sgd"
            else torch.optim.Adam(tm.parameters()))
    return torch_training_epoch(tm, topt, x, labels, batch, steps, autocast=autocast)


def training_rows(threads: int, rounds: int) -> list[list]:
    from bench.bench_train import training_epochs

    set_threads(threads)
    out = []
    for name, (batch, steps) in TRAINING.items():
        fns = {"cnnfast fp32": training_epochs(name, batch, steps)["cnnfast"],
               "cnnfast bf16": training_epochs(name, batch, steps, "bfloat16")["cnnfast"]}
        if torch is not None:
            fns["torch fp32"] = torch_training(name, batch, steps, autocast=False)
            fns["torch bf16 autocast"] = torch_training(name, batch, steps, autocast=True)
        times = time_rounds(fns, rounds=rounds, settle=SETTLE_SECONDS)
        rate = {k: batch * steps / median(v) for k, v in times.items()}
        auto = rate.get("torch bf16 autocast")
        bf16 = rate["cnnfast bf16"]
        out.append([f"train {name} b{batch}", threads, rate["cnnfast fp32"], bf16,
                    bf16 / rate["cnnfast fp32"], rate.get("torch fp32"), auto,
                    bf16 / auto if auto else None])
        print(out[-1], flush=True)
    return out


def latency_rows(threads: int, rounds: int) -> list[list]:
    from bench import bench_onnx

    out = []
    for name in LATENCY_MODELS:
        got = {r[1]: r for r in bench_onnx.rows(threads, rounds, name)}
        if "onnxruntime" not in got:
            continue
        ort_us = got["onnxruntime"][3]
        for contender in ("cnnfast predict", "C API"):
            if contender in got:
                r = got[contender]
                out.append([name, contender, threads, r[3], r[4], ort_us, ort_us / r[3]])
                print(out[-1], flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    require_bench_extra()
    threads = [int(t) for t in args.threads.split(",")]
    head = cpu_lines() + environment()
    print("\n".join(head), flush=True)
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    command = " ".join(argv if argv is not None else sys.argv[1:])
    report = [f"# Beyond FP32 on {machine_name()}", "",
              f"{stamp}; command: `python -m bench beyond {command}`", ""]
    report += [f"- {line}" for line in head] + [""]
    tables = []

    from bench import bench_quantize

    rows = []
    for t in threads:
        print(f"\n== int8 inference, batch 128, {t} thread(s) ==", flush=True)
        rows += bench_quantize.rows(t)
    tables.append(("int8 inference at batch 128 (bench.bench_quantize)",
                   markdown_table(bench_quantize.HEADER, rows)))

    rows = []
    for t in threads:
        print(f"\n== FP32 batch-1 latency, {t} thread(s) ==", flush=True)
        rows += latency_rows(t, max(args.rounds, 15))
    tables.append(("FP32 batch-1 latency (bench.bench_onnx; us, medians and minima)",
                   markdown_table(["model", "contender", "threads", "median us", "min us",
                                   "onnxruntime median us", "x onnxruntime"], rows)))

    rows = []
    for t in threads:
        print(f"\n== training throughput, {t} thread(s) ==", flush=True)
        rows += training_rows(t, args.rounds)
    tables.append(("bfloat16 training (img/s)",
                   markdown_table(["benchmark", "threads", "cnnfast fp32", "cnnfast bf16",
                                   "cnnfast bf16 / fp32", "torch fp32", "torch bf16 autocast",
                                   "cnnfast bf16 / torch bf16"], rows)))

    for title, table in tables:
        print(f"\n## {title}\n\n{table}", flush=True)
        report += [f"## {title}", "", table, ""]
    if not args.no_write:
        write_results("-beyond", report)


if __name__ == "__main__":
    main()
