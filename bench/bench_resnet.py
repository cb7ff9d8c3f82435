"""ResNet-20 v1 training throughput on CIFAR-sized synthetic data: cnnfast vs PyTorch running
the same model channels-last, batch 128, on 1 and 2 threads.

    OMP_PROC_BIND=close python -m bench resnet --threads 1,2

cnnfast trains cnnfast.models.resnet20 (the Keras example's ResNet-20 v1: Conv-BN-ReLU, three
stages of 16/32/64 filters, 1x1 stride-2 projection shortcuts, AveragePooling2D(8), softmax
Dense; 274,442 parameters) through its C++ train plan. PyTorch trains the same layers written
out as an nn.Module in channels_last memory: the L2(1e-4) kernel penalty becomes SGD
weight_decay 2e-4 on the kernels (the same gradient), BatchNorm2d(momentum=0.01, eps=1e-3)
(Keras 0.99 / 1e-3), and the stride-2 3x3 convolutions pad one row/column on each side where
Keras pads only at the bottom/right (the same output size and FLOPs). Both use SGD(0.1,
momentum 0.9) and softmax cross-entropy on the same synthetic data.
"""

from __future__ import annotations

import argparse

import numpy as np

import cnnfast as cf
from bench.bench_train import torch_training_epoch
from bench.common import SETTLE_SECONDS, environment, median, set_threads, time_rounds, torch
from cnnfast import models


def torch_resnet20():
    """ResNet-20 v1 as cnnfast.models.resnet20 (see the module docstring for the padding)."""
    nn = torch.nn

    def conv_bn(cin, cout, k=3, stride=1, bn=True):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2)]
        if bn:
            layers.append(nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01))
        return nn.Sequential(*layers)

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.a = conv_bn(cin, cout, stride=stride)
            self.b = conv_bn(cout, cout)
            self.short = conv_bn(cin, cout, 1, stride, bn=False) if stride != 1 else None

        def forward(self, x):
            y = self.b(torch.relu(self.a(x)))
            return torch.relu((self.short(x) if self.short is not None else x) + y)

    class ResNet20(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = conv_bn(3, 16)
            blocks, cin = [], 16
            for stage, cout in enumerate((16, 32, 64)):
                for block in range(3):
                    blocks.append(Block(cin, cout, 2 if stage > 0 and block == 0 else 1))
                    cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            x = self.blocks(torch.relu(self.stem(x)))
            return self.fc(torch.flatten(nn.functional.avg_pool2d(x, 8), 1))

    return ResNet20().to(memory_format=torch.channels_last)


def training_epochs(batch: int, steps: int) -> dict:
    cf.set_seed(0)
    model = models.resnet20()
    model.compile(cf.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((batch * steps, 32, 32, 3), dtype=np.float32)
    labels = rng.integers(0, 10, batch * steps)
    fns = {"cnnfast": lambda: model.fit(x, labels, batch_size=batch, epochs=1, verbose=0)}
    assert model._train_plan is not None  # timed: the C++ train plan, not the layer walk
    if torch is not None:
        tm = torch_resnet20()
        kernels = [p for n, p in tm.named_parameters() if p.ndim == 4]
        others = [p for n, p in tm.named_parameters() if p.ndim != 4]
        topt = torch.optim.SGD([{"params": kernels, "weight_decay": 2e-4},
                                {"params": others, "weight_decay": 0.0}], lr=0.1, momentum=0.9)
        fns["torch"] = torch_training_epoch(tm, topt, x, labels, batch, steps)
    return fns


def rows(threads: int, rounds: int = 5, quick: bool = False) -> list[list]:
    """Rows: [benchmark, unit, cnnfast, torch, numpy, cnnfast/torch, cnnfast/numpy]."""
    set_threads(threads)
    batch, steps = 128, 2 if quick else 8
    times = time_rounds(training_epochs(batch, steps), rounds=rounds, settle=SETTLE_SECONDS)
    res = {k: batch * steps / median(v) for k, v in times.items()}
    c, t = res["cnnfast"], res.get("torch")
    out = [[f"train resnet20 b{batch} ({threads}T)", "img/s", c, t, None,
            c / t if t else None, None]]
    print(out[-1], flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print("\n".join(environment()))
    for n in (int(t) for t in args.threads.split(",")):
        rows(n, args.rounds, args.quick)


if __name__ == "__main__":
    main()
