"""Mixed-precision training's accuracy goal: the Keras MNIST CNN after the usual 10 epochs in
float32 and in bfloat16 (``compile(precision="bfloat16")``), seed by seed.

    PYTHONPATH=. python bench/mixed_precision_accuracy.py [--seeds 0,1,2,3,4] [--threads 1]

Each (seed, precision) is one ``bench/train_mnist.py --runs keras-cnn-mnist`` run in its own
process (two at a time on machines with two or more cores, each on --threads threads); the table
gives both test accuracies and their difference per seed, then the mean. Issue 23 asks for at
least 99.1% and at most 0.1 point below float32 on the same seed. Needs MNIST (cnnfast.datasets
or ../shared/datasets). Writes bench/results/<machine>-mixed-precision-accuracy-<T>t.md. Not run in
CI (each run takes a minute or two).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine_name, markdown_table, write_results

PRECISIONS = ("float32", "bfloat16")


def run(seed: int, precision: str, threads: int, folder: Path) -> float:
    """Test accuracy (%) of one training run."""
    out = folder / f"{precision}-{seed}"
    cmd = [sys.executable, str(ROOT / "bench" / "train_mnist.py"), "--runs", "keras-cnn-mnist",
           "--threads", str(threads), "--seed", str(seed), "--precision", precision,
           "--out", str(out), "--verbose", "0"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH",
                                                                                 "")]))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    rows = json.loads((out / "training.json").read_text()) if proc.returncode == 0 and \
        (out / "training.json").exists() else {}
    if not rows:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    (row,) = rows.values()
    print(f"seed {seed} {precision}: {row['test accuracy']}", flush=True)
    return float(row["test accuracy"].rstrip("%"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    workers = 2 if (os.cpu_count() or 1) >= 2 * args.threads else 1
    with tempfile.TemporaryDirectory() as tmp, \
            concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {(s, p): pool.submit(run, s, p, args.threads, Path(tmp))
                   for s in seeds for p in PRECISIONS}
        acc = {key: f.result() for key, f in futures.items()}
    rows, diffs = [], []
    for s in seeds:
        f32, bf16 = acc[(s, "float32")], acc[(s, "bfloat16")]
        diffs.append(bf16 - f32)
        rows.append([s, f"{f32:.2f}%", f"{bf16:.2f}%", f"{bf16 - f32:+.2f}",
                     "yes" if bf16 >= 99.1 and bf16 - f32 >= -0.1 else "NO"])
    rows.append(["mean", f"{sum(acc[(s, 'float32')] for s in seeds) / len(seeds):.2f}%",
                 f"{sum(acc[(s, 'bfloat16')] for s in seeds) / len(seeds):.2f}%",
                 f"{sum(diffs) / len(diffs):+.2f}", ""])
    table = markdown_table(["seed", "float32", "bfloat16", "bfloat16 - float32 (points)",
                            ">= 99.1% and >= -0.1"], rows)
    lines = [
        f"# Mixed-precision training accuracy on {machine_name()}", "",
        (f"{datetime.datetime.now().isoformat(timespec='seconds')}; command: `python "
        f"bench/mixed_precision_accuracy.py --seeds {args.seeds} --threads {args.threads}` "
        "(the Keras MNIST CNN, Adam 1e-3, batch 128, 10 epochs, inputs x/255; test accuracy "
        "on the 10,000 test images)."), "", table]
    print("\n" + table)
    write_results(f"-mixed-precision-accuracy-{args.threads}t", lines)


if __name__ == "__main__":
    main()
