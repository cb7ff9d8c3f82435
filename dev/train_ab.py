"""Training-step time of two or more builds of cnnfast, in alternating short processes.

    OMP_PROC_BIND=close python dev/train_ab.py keras_mnist_cnn /tmp/base /tmp/change \\
        [--precision bfloat16] [--rounds 20] [--steps 20]

Each build is a source tree built in place (dev/build.sh, or `cmake -S . -B build
-DCNNFAST_INPLACE=ON`). Round by round, each tree in turn runs `dev/profile_step.py train` (this
checkout's script, with the tree first on PYTHONPATH: a few warm-up steps, then --steps timed
ones) in a fresh process; the medians and minima over the rounds are printed. A Python process
holds one build of the extension, so the builds cannot share a process the way dev/capi_ab.py's
C API builds do; rounds of a second or two each follow the machine's drift closely enough that
copies of one build agree within a few percent of their medians here (the minima closer).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

import numpy as np

from dev.profile_step import MODELS

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "profile_step.py")


def step_ms(tree: str, model: str, precision: str, steps: int, threads: int) -> float:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    out = subprocess.run(
        [sys.executable, SCRIPT, "train", model, "--steps", str(steps), "--precision", precision,
         "--threads", str(threads)],
        env=env, check=True, capture_output=True, text=True).stdout
    found = re.search(r": ([0-9.]+) ms per call", out)
    if not found:
        raise SystemExit(f"{tree}: no time in {out!r}")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("trees", nargs="+")
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    times: list[list[float]] = [[] for _ in args.trees]
    for _ in range(args.rounds):
        for i, tree in enumerate(args.trees):
            times[i].append(step_ms(tree, args.model, args.precision, args.steps, args.threads))
    print(f"train {args.model}, {args.precision}, {args.threads} thread(s), {args.rounds} rounds "
          f"of {args.steps} steps (ms per step)")
    for tree, t in zip(args.trees, times):
        print(f"  {tree:<28} median {np.median(t):8.3f}   min {np.min(t):8.3f}")


if __name__ == "__main__":
    main()
