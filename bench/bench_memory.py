"""Peak memory of training VGG16-CIFAR against the analyzer's training-memory estimate.

    python -m bench.bench_memory [--batch-size 64] [--steps 3] [--optimizer sgd|momentum|adam]

Each optimizer runs in its own child process (peak RSS is per process and never goes down):
the child imports cnnfast, records its resident set (the interpreter, NumPy and the libraries:
the baseline), builds ``cnnfast.models.vgg16(input_shape=(32, 32, 3), classes=10,
fc_units=512)``, trains `steps` batches with ``train_on_batch`` and reports VmHWM (peak RSS).
The ratio compared with the target (<= 1.3) is (peak - baseline) / estimate, where the
estimate is ``cnnfast.analyze(model, optimizer, batch_size).totals["training_memory_bytes"]``
(params + gradients + optimizer state + batch x (activations and their gradients)).
The child also itemises the arrays the model holds after training, so an overshoot can be
traced to a layer buffer, a kernel workspace or the optimizer.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, sys
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
import numpy as np
import cnnfast as cf
from cnnfast import _core
batch, steps, opt_name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
baseline = status("VmRSS")
cf.set_seed(0)
model = cf.models.vgg16(input_shape=(32, 32, 3), classes=10, fc_units=512)
opt = {"sgd": lambda: cf.optimizers.SGD(0.01),
       "momentum": lambda: cf.optimizers.SGD(0.01, momentum=0.9),
       "adam": lambda: cf.optimizers.Adam(1e-3)}[opt_name]()
model.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
report = cf.analyze(model, optimizer=opt, batch_size=batch)
rng = np.random.default_rng(0)
x = rng.random((batch, 32, 32, 3), dtype=np.float32)
y = rng.integers(0, 10, batch)
after_build = status("VmRSS")
for _ in range(steps):
    model.train_on_batch(x, y)
peak = status("VmHWM")

# Where the memory is: arrays held by the model after training.
seen = set()
def nbytes(arrays):
    total = 0
    for a in arrays:
        if isinstance(a, np.ndarray):
            base = a if a.base is None else a.base
            if id(base) not in seen:
                seen.add(id(base))
                total += base.nbytes
    return total
items = {}
items["params"] = nbytes(w for l in model.layers for w in l.weights_.values())
items["gradients"] = nbytes(g for l in model.layers for g in l.gradients_.values())
items["optimizer state"] = nbytes(s for slots in opt._slots.values() for s in slots)
items["layer buffers (activations, gradients, masks)"] = nbytes(
    b for l in model.layers for b in l._buffers.values())
items["other arrays held by layers"] = nbytes(
    v for l in model.layers for v in list(vars(l).values())
    + [getattr(getattr(l, "act", None), "y", None), getattr(getattr(l, "act", None), "z", None)])
items["loss gradient buffer"] = nbytes([getattr(model, "_loss_grad", None)])
items["input batch"] = nbytes([x])
ws = 0
for layer, shape_in, shape_out in model.shapes():
    if isinstance(layer, cf.layers.Conv2D):
        h, w, c = shape_in
        oh, ow, k = shape_out
        kh, kw = layer.kernel_size
        ws = max(ws, 4 * _core.conv2d_workspace_size(batch, h, w, c, kh, kw, k, oh, ow,
                                                     *layer.strides, layer.pad_top,
                                                     layer.pad_left, layer.groups))
items["largest conv workspace (per thread, C++ scratch)"] = ws
print(json.dumps({"baseline": baseline, "after_build": after_build, "peak": peak,
                  "estimate": report.totals["training_memory_bytes"],
                  "estimate_parts": {k: report.totals[k] for k in (
                      "param_bytes", "param_gradient_bytes", "optimizer_state_bytes",
                      "training_activation_bytes_per_image")},
                  "threads": cf.get_num_threads(), "items": items}))
"""


def measure(batch: int, steps: int, optimizer: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(batch), str(steps), optimizer],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mib(n: float) -> str:
    return f"{n / 2**20:8.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--optimizer", choices=["sgd", "momentum", "adam", "all"], default="all")
    args = p.parse_args(argv)
    opts = ["sgd", "momentum", "adam"] if args.optimizer == "all" else [args.optimizer]
    print(f"VGG16-CIFAR (fc_units=512), batch {args.batch_size}, {args.steps} training steps")
    print(f"{'optimizer':<10}{'estimate':>14}{'peak RSS':>14}{'baseline':>14}"
          f"{'peak-baseline':>16}{'ratio':>8}")
    worst = 0.0
    for opt in opts:
        r = measure(args.batch_size, args.steps, opt)
        used = r["peak"] - r["baseline"]
        ratio = used / r["estimate"]
        worst = max(worst, ratio)
        print(f"{opt:<10}{mib(r['estimate']):>14}{mib(r['peak']):>14}{mib(r['baseline']):>14}"
              f"{mib(used):>16}{ratio:>8.2f}")
        for name, n in r["items"].items():
            print(f"    {name:<52}{mib(n)}")
    print(f"worst ratio (peak RSS - baseline) / estimate: {worst:.2f} "
          f"({'within' if worst <= 1.3 else 'OVER'} the 1.3 target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
