"""A few operations of two builds, timed in alternating processes: the recheck of the rows that
`bench.compare_builds` flags or leaves borderline.

    OMP_PROC_BIND=close python -m bench.compare_ops --before ../base --after . [--rounds 6]

Each round runs every probe once per build, each in a fresh process (the order of the builds
flips every round); a process times 15 blocks of calls after a warm-up and reports the median
block. Printed: each build's median over the rounds. Probes (2 threads):
  relu            activation_forward relu on (128, 26, 26, 64): GB/s (read + write)
  sgemm512        sgemm 512 x 512 x 512: GFLOP/s
  lenet5_predict  LeNet-5 (32x32x1) predict of one image: microseconds per call
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.compare_builds import sandbox

PROBE = r'''
import sys, time
import numpy as np
import cnnfast as cf
from cnnfast import _core
cf.set_num_threads(2)
what = sys.argv[1]
rng = np.random.default_rng(0)
if what == "relu":
    x = rng.standard_normal((128, 26, 26, 64)).astype(np.float32)
    y = np.empty_like(x)
    fn, calls, scale = (lambda: _core.activation_forward(y, x, "relu")), 20, 2 * x.nbytes / 1e9
elif what == "sgemm512":
    a = rng.standard_normal((512, 512)).astype(np.float32)
    c = np.zeros_like(a)
    fn, calls, scale = (lambda: _core.sgemm(c, a, a)), 20, 2 * 512**3 / 1e9
else:
    model = cf.models.lenet5((32, 32, 1))
    x = np.zeros((1, 32, 32, 1), np.float32)
    fn, calls, scale = (lambda: model.predict(x)), 2000, None
for _ in range(calls):
    fn()
blocks = []
for _ in range(15):
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    blocks.append((time.perf_counter() - t) / calls)
t = sorted(blocks)[len(blocks) // 2]
print(t * 1e6 if scale is None else scale / t)
'''
UNITS = {"relu": "GB/s", "sgemm512": "GFLOP/s", "lenet5_predict": "us"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--probes", default=",".join(UNITS))
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    probes = args.probes.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {side: sandbox(getattr(args, side), Path(tmp) / side) for side in ("before", "after")}
        values = {(p, side): [] for p in probes for side in dirs}
        for r in range(args.rounds):
            for probe in probes:
                for side in (("before", "after") if r % 2 == 0 else ("after", "before")):
                    out = subprocess.run([sys.executable, "-c", PROBE, probe], cwd=dirs[side],
                                         capture_output=True, text=True, check=True).stdout
                    values[probe, side].append(float(out))
    print("| probe | unit | before | after |")
    print("|---|---|---|---|")
    for probe in probes:
        b, a = (statistics.median(values[probe, side]) for side in ("before", "after"))
        print(f"| {probe} | {UNITS[probe]} | {b:.4g} | {a:.4g} |")


if __name__ == "__main__":
    main()
