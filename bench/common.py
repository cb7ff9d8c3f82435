"""Shared timing and environment reporting for the bench scripts.

Timing rule: contenders are run in turn, round after round, on the same inputs, so both see
the same machine load; we report the median of the rounds (and keep the minimum for noisy
machines). Threads are pinned by the caller's environment (OMP_PROC_BIND=close).
"""

from __future__ import annotations

import importlib
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

try:
    import torch
except ImportError:  # the bench still runs cnnfast and NumPy
    torch = None


# What the bench needs beyond cnnfast and NumPy (the `bench` extra): threadpoolctl holds NumPy's
# BLAS to the row's thread count (without it the 1-thread NumPy rows ran on every core), and
# torch is the reference every section compares with.
BENCH_PREREQUISITES = ("threadpoolctl", "torch")


def require_bench_extra() -> None:
    """Stop with one line on stderr (exit status 2) naming what is missing and the extra."""
    missing = []
    for name in BENCH_PREREQUISITES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        sys.stderr.write(f"bench: {', '.join(missing)} not installed; install the bench extra: "
                         f"pip install '.[bench]'\n")
        raise SystemExit(2)


# Idle threads of one contender's pool keep spinning on the cores after its call returns
# (OpenBLAS's workers for ~2**28 cycles, about 0.1 s here), so a contender timed straight after
# NumPy runs on a core still busy (measured: cnnfast's Keras-CNN training epoch 18% slower).
# Benchmarks of long calls with a multi-threaded NumPy contender pass settle=SETTLE_SECONDS:
# every timed call then starts on idle cores. Short calls do not: the pause would time them cold.
SETTLE_SECONDS = 0.15


def time_rounds(fns: dict[str, Callable[[], object]], rounds: int = 7,
                min_seconds: float = 0.0, settle: float = 0.0, block_seconds: float = 0.0,
                block_calls: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function, alternating contenders every round; each contender's
    turn first waits `settle` seconds (see SETTLE_SECONDS).

    A turn is one timed call, or, with block_seconds, a block: one untimed call (caches, buffers
    and thread pools warm again after the settle), then timed calls for block_seconds and at
    least block_calls (at most 1000: a 256^2 GEMM takes 0.1 ms). Blocks suit short calls, which
    one timed call per turn would catch cold."""
    for fn in fns.values():
        fn()  # warm-up: buffers, thread pools, page faults
    times: dict[str, list[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    r = 0
    while r < rounds or time.perf_counter() - start < min_seconds:
        for name, fn in fns.items():
            if settle:
                time.sleep(settle)
            if block_seconds:
                fn()
            calls, t_block = 0, time.perf_counter()
            while calls < block_calls or (time.perf_counter() - t_block < block_seconds
                                          and calls < 1000):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
                calls += 1
        r += 1
        if r >= 200:
            break
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def set_threads(n: int) -> None:
    from cnnfast import _core

    _core.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)
    try:
        import threadpoolctl

        threadpoolctl.threadpool_limits(n)
    except ImportError:
        pass


def blas_info() -> str:
    try:
        import threadpoolctl

        infos = threadpoolctl.threadpool_info()
        blas = [i for i in infos if i.get("user_api") == "blas"]
        if blas:
            b = blas[0]
            return f"{b.get('internal_api')} {b.get('version')} kernel={b.get('architecture')}"
    except ImportError:
        pass
    return "unknown (install threadpoolctl)"


def machine_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The results files' name for this machine: the CPU's model name as a slug, and its core
    count (the first processor block of `cpuinfo` is read)."""
    cpu = platform.processor() or "cpu"
    fields: dict[str, str] = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if not line.strip():
                    break  # the first processor's block is enough
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cpu = fields.get("model name", cpu)
    slug = re.sub(r"[^a-z0-9]+", "-", cpu.lower()).strip("-")
    slug = re.sub(r"-(r|tm|processor|cpu)(?=-|$)", "", slug)
    # A virtual machine may report only "AMD EPYC": Zen 4 (family 25) and Zen 5 (family 26)
    # then share one name while their FP32 peaks differ by 2x, so a generic name without a
    # model number gets the CPU family and model (the results of "amd-epyc-2c" came from both).
    if not re.search(r"\d", slug) and "cpu family" in fields and "model" in fields:
        slug += f"-family{fields['cpu family']}-model{fields['model']}"
    return f"{slug}-{os.cpu_count()}c"


def environment() -> list[str]:
    from cnnfast import _core

    lines = [
        f"machine: {machine_name()} ({os.cpu_count()} logical CPUs)",
        f"cnnfast SIMD path: {_core.sgemm_simd_path()}; threads {_core.get_num_threads()}",
        f"NumPy BLAS: {blas_info()}",
        f"torch: {torch.__version__ if torch is not None else 'not installed'}",
        "env: " + ", ".join(f"{k}={os.environ.get(k, '(unset)')}" for k in
                            ("OMP_PROC_BIND", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")),
    ]
    return lines


HEADER_ROW = ["benchmark", "unit", "cnnfast", "torch", "numpy", "x torch", "x numpy"]


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def write_results(name: str, lines: list[str]) -> None:
    """bench/results/<machine><name>.md from `lines`, replaced whole (never half-written)."""
    out = Path(__file__).resolve().parent / "results" / f"{machine_name()}{name}.md"
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out)
    print(f"\nwrote {out}")
