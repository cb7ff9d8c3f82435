"""Data-parallel scaling: 1 and 2 MPI ranks on this machine, and a model for 8 to 512 ranks.

    python -m bench.bench_distributed            # needs mpi4py and mpiexec ('.[mpi]' mpich)

Measures, for the Keras MNIST CNN and VGG16-CIFAR (FC 512), training throughput (images/s)
with 1 rank of all cores and with 2 ranks sharing them (threads per rank: cnnfast.distributed's
default), the time a rank waits in the gradient allreduce per step (load imbalance included),
and the cost of one in-place Allreduce of the gradient buffer alone. Then models the scaling to
8, 64 and 512 ranks for those two and ResNet-20 on a cluster network whose bandwidth and latency
are stated in the output, with and without overlapping the allreduce with the backward pass.
Writes bench/results/distributed.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODELS = {"keras_mnist_cnn": ((28, 28, 1), 128), "vgg16_cifar": ((32, 32, 3), 32)}
STEPS, WARMUP, ROUNDS = 6, 2, 3

# The cluster assumed by the model: one rank per node, nodes linked by 100 Gb/s InfiniBand
# (HDR100 / EDR): 12.5 GB/s per direction, 2 us a message on the wire plus ~3 us of MPI
# software; the reduction's additions at 10 GB/s of memory traffic. A node computes COMPUTE_X
# times as fast as this 2-core machine (a 32-core node, 16x the cores, scaling linearly:
# optimistic for compute, so pessimistic for the ratio of communication to compute).
BANDWIDTH = 12.5e9
LATENCY = 5e-6
REDUCE_RATE = 10e9
COMPUTE_X = 16.0
BUCKETS = 4
# ResNet-20 (He et al. 2016, CIFAR, 3 stages x 3 blocks, 16/32/64 filters) is not in the zoo:
# its published counts, and its compute time estimated from VGG16-CIFAR's measured training
# rate in FLOP/s (both are 3x3-conv networks on 32x32 inputs).
RESNET20_PARAMS = 272_474
RESNET20_TRAIN_FLOPS = 3 * 2 * 40_550_000  # forward MACs x 2 x (forward + 2 backward)


def _model(name: str):
    from cnnfast import models
    if name == "keras_mnist_cnn":
        return models.keras_mnist_cnn()
    return models.vgg16((32, 32, 3), 10, fc_units=512, dropout=0.0)


def worker(names: list[str], overlap: bool) -> None:
    """Under mpiexec: time each model's data-parallel fit and a bare gradient allreduce."""
    import cnnfast as cf
    from cnnfast import analyzer, distributed

    strategy = distributed.MPIStrategy(timeout=600, overlap=overlap)
    MPI, comm = strategy.MPI, strategy.comm
    results = []
    for name in names:
        shape, batch = MODELS[name]
        cf.set_seed(0)
        model = _model(name)
        model.compile(cf.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch * STEPS, *shape)).astype(np.float32)
        y = rng.integers(0, 10, batch * STEPS).astype(np.int32)
        model.fit(x[:batch * WARMUP], y[:batch * WARMUP], batch_size=batch, epochs=1, verbose=0,
                  shuffle=False, distributed=strategy)
        strategy.agree(False, "the start of the timed run")
        waited = strategy.allreduce_seconds
        started = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False,
                  distributed=strategy)
        seconds = time.perf_counter() - started
        waited = strategy.allreduce_seconds - waited
        grads = model.flat_gradients()
        bare = []
        for _ in range(10):
            comm.Barrier()
            t = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, grads, op=MPI.SUM)
            bare.append(time.perf_counter() - t)
        totals = analyzer.analyze(model).totals
        results.append({
            "model": name, "ranks": strategy.size, "threads": cf.get_num_threads(),
            "batch": batch, "params": model.count_params(),
            "gradient_bytes": int(grads.nbytes), "train_flops": totals["flops_train_per_image"],
            "images_per_s": batch * STEPS / seconds, "step_s": seconds / STEPS,
            "allreduce_wait_s": waited / STEPS, "bare_allreduce_s": float(np.median(bare)),
        })
    if strategy.is_root:
        print("RESULT " + json.dumps(results), flush=True)


def _mpiexec() -> str:
    exe = Path(sys.executable).parent / "mpiexec"
    path = str(exe) if exe.exists() else shutil.which("mpiexec")
    if path is None:
        sys.exit("bench_distributed: needs mpiexec and mpi4py: pip install '.[mpi]' mpich")
    return path


def measure(ranks: int, overlap: bool = False) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([_mpiexec(), "-n", str(ranks), sys.executable, "-m",
                           "bench.bench_distributed", "--worker", ",".join(MODELS),
                           *(["--overlap"] if overlap else [])],
                          capture_output=True, text=True, env=env, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        sys.exit(f"bench_distributed: {ranks} ranks failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(line[len("RESULT "):])


def allreduce_seconds(p: int, nbytes: float, messages: int = 1) -> float:
    """Rabenseifner's allreduce (reduce-scatter by recursive halving, then allgather by
    recursive doubling; what MPICH and Open MPI use for large buffers), `messages` of them
    for the same total bytes."""
    if p == 1:
        return 0.0
    share = (p - 1) / p
    return (messages * 2 * math.ceil(math.log2(p)) * LATENCY
            + 2 * share * nbytes / BANDWIDTH + share * nbytes / REDUCE_RATE)


def model_rows(measured: dict[str, dict]) -> tuple[list[list[str]], list[str]]:
    vgg = measured["vgg16_cifar"]
    # Per-image training time on one cluster node (COMPUTE_X times this machine's 1 rank).
    per_image = {name: m["step_s"] / m["batch"] / COMPUTE_X for name, m in measured.items()}
    flop_rate = vgg["train_flops"] * vgg["batch"] / vgg["step_s"]
    per_image["resnet20"] = RESNET20_TRAIN_FLOPS / flop_rate / COMPUTE_X
    nets = [("keras_mnist_cnn", measured["keras_mnist_cnn"]["gradient_bytes"], 1024),
            ("vgg16_cifar", vgg["gradient_bytes"], 1024),
            ("resnet20", RESNET20_PARAMS * 4, 1024)]
    rows, notes = [], []
    for name, nbytes, global_batch in nets:
        crossover = None
        for p in (2 ** k for k in range(10)):
            compute = per_image[name] * global_batch / p
            if crossover is None and allreduce_seconds(p, nbytes) > compute:
                crossover = p
        for p in (8, 64, 512):
            compute = per_image[name] * global_batch / p
            comm = allreduce_seconds(p, nbytes)
            plain = compute + comm
            # Overlap: the backward (2/3 of the step's FLOPs) hides the allreduce of BUCKETS
            # buckets launched as their gradients are ready, all but the last one.
            backward = compute * 2 / 3
            bucketed = allreduce_seconds(p, nbytes, BUCKETS)
            overlapped = compute - backward + max(backward, bucketed * (BUCKETS - 1) / BUCKETS) \
                + bucketed / BUCKETS
            ideal = per_image[name] * global_batch
            rows.append([name, f"{nbytes / 1e6:.2f}", str(p), f"{global_batch // p}",
                         f"{compute * 1e3:.2f}", f"{comm * 1e3:.2f}",
                         f"{ideal / plain / p:.0%}", f"{ideal / overlapped / p:.0%}"])
        notes.append(f"- {name}: communication exceeds compute from "
                     f"{crossover if crossover else 'beyond 512'} ranks (global batch "
                     f"{global_batch}).")
    return rows, notes


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--overlap", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker.split(","), args.overlap)
        return
    # The machine may be shared: alternate 1 and 2 ranks over ROUNDS rounds and keep each
    # configuration's fastest round.
    # 2 ranks run twice: reducing the whole gradient after the backward (overlap=False), and in
    # buckets started during the backward (the default, overlap="auto").
    configs = {"1": (1, False), "2": (2, False), "2, overlap": (2, True)}
    runs: dict[str, list[dict]] = {}
    for _ in range(ROUNDS):
        for label, (ranks, overlap) in configs.items():
            new = measure(ranks, overlap)
            old = runs.get(label)
            runs[label] = new if old is None else [
                n if n["images_per_s"] > o["images_per_s"] else o for n, o in zip(new, old)]
    rows = []
    for label, results in runs.items():
        ranks = configs[label][0]
        for r in results:
            rows.append([r["model"], f"{r['params']:,}", label, str(r["threads"]),
                         str(r["batch"]), f"{r['images_per_s']:,.0f}",
                         f"{r['step_s'] * 1e3:.1f}", f"{r['allreduce_wait_s'] * 1e3:.2f}",
                         f"{r['bare_allreduce_s'] * 1e3:.3f}" if ranks > 1 else "-"])
    measured = {r["model"]: r for r in runs["1"]}
    model, notes = model_rows(measured)
    text = "\n".join([
        "# Data-parallel training over MPI", "",
        (f"Measured {time.strftime('%Y-%m-%d')} on this machine ({os.cpu_count()} cores, "
         f"load average {os.getloadavg()[0]:.1f} at the end: other work shares the cores), "
         f"MPI over shared memory, `python -m bench.bench_distributed`. Global batch as shown, "
         f"SGD with momentum, {STEPS} timed steps after {WARMUP} warm-up steps, the fastest of "
         f"{ROUNDS} alternating rounds. `allreduce wait`: time per step rank 0 spends from "
         "starting the gradient allreduce to its completion, waiting for the slower rank "
         "included (with overlap: from the end of the backward); `bare allreduce`: one in-place Allreduce of the gradient buffer alone "
         "(median of 10, after a barrier). On a shared machine, runs a few minutes apart "
         "have differed by up to 2x (an OpenMP team of 2 threads suffers most when another "
         "process takes a core): compare 1 and 2 ranks on a quiet machine before concluding."),
        "",
        _table(["model", "params", "ranks", "threads/rank", "global batch", "images/s",
                "step ms", "allreduce wait ms", "bare allreduce ms"], rows), "",
        "## Model: 8, 64 and 512 ranks", "",
        (f"Assumed cluster: one rank per node; network {BANDWIDTH / 1e9:g} GB/s per direction "
        f"(100 Gb/s InfiniBand) and {LATENCY * 1e6:g} us per message (wire plus MPI "
        f"software); the reduction's sums at {REDUCE_RATE / 1e9:g} GB/s; a node computes "
        f"{COMPUTE_X:g}x as fast as 1 rank here (a 32-core node). Allreduce: Rabenseifner, "
        "2 log2(p) latencies + 2 (p-1)/p bytes/bandwidth + (p-1)/p bytes/reduce rate. Strong "
        "scaling: the global batch stays 1024, each rank computing 1024/p images (per-image "
        "cost taken as constant, optimistic for small shards). `efficiency`: the one-node time "
        "divided by p times the step time; `plain`: the whole gradient reduced after the "
        f"backward; `overlap`: {BUCKETS} gradient buckets started as the backward produces "
        "them (cnnfast's MPIStrategy default, overlap='auto'), hiding all but the last behind "
        "the backward (2/3 of the step). ResNet-20 is "
        "estimated from its published counts at VGG16-CIFAR's measured FLOP rate."), "",
        _table(["model", "gradient MB", "ranks", "images/rank", "compute ms", "allreduce ms",
                "efficiency plain", "efficiency overlap"], model), "",
        *notes, ""])
    print(text)
    out = Path(__file__).resolve().parent / "results" / "distributed.md"
    out.write_text(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
