"""cnnfast against an earlier build of itself: every row of `python -m bench`, before and after.

    OMP_PROC_BIND=close env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python -m bench.compare_builds --before ../base --after . [--rounds 4]

``--before`` and ``--after`` are checkouts with an in-place build (``./dev/build.sh``). Both
run this checkout's bench scripts, each section as its own process (``python -m bench SECTION
--no-write``), alternating before/after round after round (the order flips every round), so
both builds see the same machine load. Only the cnnfast column is kept (torch is hidden from
the bench processes, which then skip its contenders). For each row it prints the median of the
rounds for each build, after/before as a speed ratio (> 1: the after build is faster), and the
noise: the larger of the two builds' spreads across rounds (upper quartile / lower quartile - 1,
which one disturbed round does not move). A row is "slower beyond the noise" when its ratio is
below 1 - noise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECTIONS = ["gemm", "conv", "bandwidth", "train", "latency"]
LOWER_IS_BETTER = {"us", "ms", "s"}
# Run a bench section with `import torch` failing, so only cnnfast (and NumPy) are timed.
RUNNER = ("import sys, runpy; sys.modules['torch'] = None; sys.argv = ['bench', *sys.argv[1:]]; "
          "runpy.run_module('bench', run_name='__main__', alter_sys=True)")


def sandbox(checkout: Path, root: Path) -> Path:
    """A directory holding copies of the checkout's `cnnfast` (its build as it is now: a rebuild
    during the run changes nothing) and of these `bench` scripts (bench.common puts its own
    parent first on sys.path, so it must not be a link)."""
    root.mkdir(parents=True)
    skip = shutil.ignore_patterns("results", "__pycache__")
    shutil.copytree(checkout / "cnnfast", root / "cnnfast", ignore=skip)
    shutil.copytree(HERE, root / "bench", ignore=skip)
    return root


def run_section(where: Path, section: str, threads: str) -> dict[str, tuple[str, float]]:
    """{row name: (unit, cnnfast value)} of one `python -m bench SECTION` run in `where`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", RUNNER, section, "--no-write", "--threads", threads],
                         cwd=where, env=env, capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 7 or cells[0] in ("benchmark", "---"):
            continue
        try:
            rows[cells[0]] = (cells[1], float(cells[2].replace(",", "")))
        except ValueError:
            continue  # "None": not measured
    return rows


def spread(xs: list[float]) -> float:
    """Upper quartile / lower quartile - 1 of the rounds' values."""
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q3 / q1 - 1 if q1 > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    commits = {}
    for side in ("before", "after"):
        checkout = getattr(args, side)
        commits[side] = subprocess.run(["git", "-C", str(checkout), "log", "-1", "--format=%h %s"],
                                       capture_output=True, text=True, check=False).stdout.strip()[:70]
        print(f"{side}: {checkout} ({commits[side]})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {side: sandbox(getattr(args, side), Path(tmp) / side) for side in commits}
        for section in args.sections.split(","):
            values: dict[str, dict[str, list[float]]] = {}
            units: dict[str, str] = {}
            for r in range(args.rounds):
                order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
                for side in order:
                    for name, (unit, v) in run_section(dirs[side], section, args.threads).items():
                        units[name] = unit
                        values.setdefault(name, {"before": [], "after": []})[side].append(v)
                print(f"  {section}: round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
            print(f"\n## {section}\n")
            print("| benchmark | unit | before | after | after/before (speed) | noise | verdict |")
            print("|---|---|---|---|---|---|---|")
            for name, by_side in values.items():
                if len(by_side["before"]) < 2 or len(by_side["after"]) < 2:
                    continue
                b, a = statistics.median(by_side["before"]), statistics.median(by_side["after"])
                speed = b / a if units[name] in LOWER_IS_BETTER else a / b
                noise = max(spread(v) for v in by_side.values())
                verdict = ("slower" if speed < 1 - noise else "faster" if speed > 1 + noise
                           else "within noise")
                print(f"| {name} | {units[name]} | {b:,.4g} | {a:,.4g} | {speed:.3f} | "
                      f"{noise:.3f} | {verdict} |", flush=True)


if __name__ == "__main__":
    main()
