"""Run the benchmarks: `python -m bench all` (or gemm / conv / train / latency / ...; `beyond`:
issue 23's int8, batch-1 latency and bfloat16 report, bench/bench_beyond.py).

Runs cnnfast, PyTorch and NumPy in one process on the same shapes and networks, prints a
table of medians with ratios (> 1 means cnnfast is faster), and writes it to
bench/results/<machine>.md (a single section: <machine>-<section>.md). Run it pinned and with OpenBLAS free to pick its best kernel:

    OMP_PROC_BIND=close env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m bench all
"""

from __future__ import annotations

# NumPy first: OpenBLAS starts its worker threads when it loads, and they must inherit the whole
# machine. Loading cnnfast or torch first would let their OpenMP runtime bind this thread to one
# core (OMP_PROC_BIND=close), and OpenBLAS's workers would then all share that core.
import numpy  # noqa: F401  isort: skip

import argparse
import datetime
import importlib
import sys

from bench.common import (
    HEADER_ROW,
    environment,
    machine_name,
    markdown_table,
    require_bench_extra,
    write_results,
)

SECTIONS = {
    "gemm": ("bench.bench_gemm", "SGEMM"),
    "gemm-isolated": ("bench.bench_gemm_isolated", "SGEMM, each contender in its own process"),
    "conv": ("bench.bench_conv", "Convolution layers"),
    "bandwidth": ("bench.bench_bandwidth", "Memory-bound kernels (numpy column: np.copyto of the same bytes)"),
    "train": ("bench.bench_train", "Training and inference throughput"),
    "resnet": ("bench.bench_resnet", "ResNet-20 v1 training throughput (CIFAR-10 sized)"),
    "latency": ("bench.bench_latency", "Batch-1 latency"),
    "quantize": ("bench.bench_quantize", "int8 inference throughput (batch 128, cnnfast.quantize)"),
}
HEADER = HEADER_ROW


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", default="all", choices=["all", *SECTIONS, "beyond"])
    parser.add_argument("--threads", default=None,
                        help="comma-separated thread counts, e.g. 1,2 (default 2; beyond: 1,2)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    require_bench_extra()
    if args.what == "beyond":  # issue 23's report, its own tables (bench/bench_beyond.py)
        from bench import bench_beyond

        return bench_beyond.main(["--threads", args.threads or "1,2"] +
                                 (["--no-write"] if args.no_write else []))
    args.threads = args.threads or "2"
    env_lines = environment()
    print("\n".join(env_lines), flush=True)
    names = list(SECTIONS) if args.what == "all" else [args.what]
    threads = [int(t) for t in args.threads.split(",")]
    command = " ".join(["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])])
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    report = [f"# cnnfast benchmarks on {machine_name()}", "", f"{stamp}; command: `{command}`", ""]
    report += [f"- {line}" for line in env_lines]
    report += ["", ("Medians of alternating rounds; `x torch` / `x numpy` > 1 means cnnfast is "
                    "faster (for latency: the other's time / cnnfast's time)."), ""]
    for name in names:
        module_name, title = SECTIONS[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            print(f"skipping {name}: {err}")
            continue
        rows = []
        for t in threads:
            print(f"\n== {title}, {t} thread(s) ==", flush=True)
            rows += module.rows(t)
        # A section with other columns than the common ones names them (bench_quantize).
        table = markdown_table(getattr(module, "HEADER", HEADER), rows)
        print(table, flush=True)
        report += [f"## {title}", "", table, ""]
    if not args.no_write:
        # `all` writes <machine>.md; a single section writes <machine>-<section>.md beside it.
        write_results("" if args.what == "all" else f"-{args.what}", report)


if __name__ == "__main__":
    main()
