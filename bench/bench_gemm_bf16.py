"""The bfloat16 and int8 GEMMs against the float32 one, same shapes, same run (issue "Beyond FP32").

    OMP_PROC_BIND=close python -m bench.bench_gemm_bf16 [--threads 1,2]

Alternating rounds (bench.common.time_rounds), medians in GFLOP/s (GOP/s for int8; 2 M N K
per product), and the ratios to fp32. The bfloat16 path does twice the multiply-adds per
instruction where the CPU has AVX512-BF16 (vdpbf16ps), the int8 path four times (vpdpbusd,
AVX512-VNNI); the ratios show what packing and the micro-kernels give of that.
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.common import environment, median, set_threads, time_rounds
from cnnfast import _core

# (label, M, N, K): square products and the im2col products of conv layers (M = N*OH*OW,
# N = filters, K = KH*KW*C).
SHAPES = [("square 512", 512, 512, 512), ("square 1024", 1024, 1024, 1024),
          ("conv 64x32x32 3x3x64->64", 65536, 64, 576),
          ("conv 64x16x16 3x3x128->128", 16384, 128, 1152)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print("\n".join(environment()))
    print(f"- bf16 GEMM path: {_core.sgemm_bf16_path()}; int8: {_core.gemm_u8s8_path()}")
    fma = max(_core.measure_fma_peak_gflops() for _ in range(3))
    bf16 = max(_core.measure_bf16_peak_gflops() for _ in range(3))
    print(f"- measured one-thread peaks: FMA {fma:.0f} GFLOP/s, vdpbf16ps "
          + (f"{bf16:.0f} GFLOP/s ({bf16 / fma:.2f}x)" if bf16 else "absent"))
    print("| product | threads | fp32 GFLOP/s | bf16 GFLOP/s | int8 GOP/s | bf16 / fp32 | "
          "int8 / fp32 |")
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for threads in (int(t) for t in args.threads.split(",")):
        set_threads(threads)
        for label, m, n, k in SHAPES:
            a = rng.standard_normal((m, k)).astype(np.float32)
            b = rng.standard_normal((k, n)).astype(np.float32)
            c = np.zeros((m, n), np.float32)
            a8 = rng.integers(0, 256, (m, k), dtype=np.uint8)
            b8 = rng.integers(-128, 128, (k, n), dtype=np.int8)
            c32 = np.zeros((m, n), np.int32)
            times = time_rounds({"fp32": lambda c=c, a=a, b=b: _core.sgemm(c, a, b),
                                 "bf16": lambda c=c, a=a, b=b: _core.sgemm_bf16(c, a, b),
                                 "int8": lambda c=c32, a=a8, b=b8: _core.gemm_u8s8s32(c, a, b)},
                                rounds=args.rounds)
            rate = {key: 2 * m * n * k / median(v) / 1e9 for key, v in times.items()}
            print(f"| {label} | {threads} | {rate['fp32']:.0f} | {rate['bf16']:.0f} | "
                  f"{rate['int8']:.0f} | {rate['bf16'] / rate['fp32']:.2f} | "
                  f"{rate['int8'] / rate['fp32']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
