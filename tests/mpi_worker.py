"""Run by tests/test_distributed.py under mpiexec (2 ranks): trains a small CNN data-parallel.

usage: python mpi_worker.py MODE OUTDIR [TIMEOUT]
MODE train: fit (SGD, a short last batch, sample weights, validation), save each rank's weights
and history to OUTDIR/rank{r}.npz; a fit with Dropout, a checkpoint and a save named after
the rank; then a fit where only rank 1's callback asks to stop.
MODE raise / kill / stall: rank 1 raises, is killed (SIGKILL) or sleeps at epoch 1, batch 3.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

import cnnfast as cf
from cnnfast import distributed

SEED = 7
SAMPLES = 35     # batch_size 8: four batches of 8 (4 + 4 per rank), then 3 (1 + 2)
BATCH_SIZE = 8
EPOCHS = 2


def data() -> tuple[np.ndarray, ...]:
    """The training set, its sample weights and a validation set of 7 (3 + 4 per rank)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((SAMPLES + 7, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, SAMPLES + 7).astype(np.int32)
    w = rng.uniform(0.5, 1.5, SAMPLES)
    return x[:SAMPLES], y[:SAMPLES], w, x[SAMPLES:], y[SAMPLES:]


def small_cnn(variant: str, seed: int = SEED) -> cf.Sequential:
    """variant "plan": the C++ train plan with SGD + momentum; "plan_l2": the same with L1/L2
    regularizers and a PReLU; "python": the Python layer walk with Adam; "dropout": the Python
    walk with a Dropout layer."""
    cf.set_seed(seed)
    reg = cf.regularizers.L1L2(l1=1e-3, l2=1e-2) if variant == "plan_l2" else None
    model = cf.Sequential([
        cf.layers.Input((8, 8, 1)),
        cf.layers.Conv2D(4, 3, activation="relu", kernel_regularizer=reg),
        cf.layers.MaxPooling2D(2),
        *([cf.layers.PReLU()] if variant == "plan_l2" else []),
        cf.layers.Flatten(),
        *([cf.layers.Dropout(0.5)] if variant == "dropout" else []),
        cf.layers.Dense(3, activation="softmax", kernel_regularizer=reg, bias_regularizer=reg),
    ])
    optimizer = (cf.optimizers.Adam(learning_rate=0.01) if variant == "python" else
                 cf.optimizers.SGD(learning_rate=0.1, momentum=0.9))
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    if variant not in ("plan", "plan_l2"):
        model._force_python_training = True
    return model


def train(model: cf.Sequential, distributed_arg) -> dict:
    x, y, w, xv, yv = data()
    history = model.fit(x, y, batch_size=BATCH_SIZE, epochs=EPOCHS, sample_weight=w,
                        validation_data=(xv, yv), verbose=0, distributed=distributed_arg)
    return history.history


class _Fail(cf.callbacks.Callback):
    def __init__(self, mode: str, rank: int) -> None:
        super().__init__()
        self.mode, self.rank = mode, rank

    def on_train_batch_begin(self, batch, logs=None):
        if self.rank != 1 or batch != 2:
            return
        if self.mode == "raise":
            raise RuntimeError("worker: rank 1 fails on purpose")
        if self.mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.mode == "stall":
            time.sleep(600)


class _FirstMask(cf.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 0:
            self.mask = self.model.layers[3].mask.copy()


class _StopOnRank1(cf.callbacks.Callback):
    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank

    def on_train_batch_end(self, batch, logs=None):
        if self.rank == 1 and batch == 1:
            self.model.stop_training = True


def main() -> int:
    mode, outdir = sys.argv[1], sys.argv[2]
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    # Start-up (Python and cnnfast imports) may take the ranks different times on a loaded
    # machine: meet once under a generous deadline, then run under the one being tested.
    strategy = distributed.MPIStrategy(timeout=120.0, threads=1)
    strategy.agree(False, "start-up")
    strategy.timeout = timeout
    rank = strategy.rank
    if mode == "train":
        results = {}
        x, y, *_ = data()
        for name in ("plan", "python"):
            # Rank 1 starts elsewhere (other initial weights, and for Adam a step already
            # taken: slots and iteration count): fit must broadcast rank 0's state.
            model = small_cnn(name, SEED + rank)
            if rank == 1:
                model.train_on_batch(x[:5], y[:5])
            history = train(model, strategy)
            results[f"{name}_weights"] = model.flat_weights().copy()
            for key, values in history.items():
                results[f"{name}_{key}"] = np.array(values)
        # Reducing buckets of the gradient arena during backward (overlap; a bucket per tensor
        # here) sums the same numbers as one reduction after it: the same weights, bit for bit.
        overlapped = distributed.MPIStrategy(timeout=120.0, threads=1, overlap=True,
                                             bucket_mb=1e-5)
        whole = distributed.MPIStrategy(timeout=120.0, threads=1, overlap=False)
        for name, strat in (("whole", whole), ("overlap", overlapped)):
            model = small_cnn("plan_l2")
            train(model, strat)
            results[f"l2_{name}_weights"] = model.flat_weights().copy()
        results["overlapped_buckets"] = np.array(overlapped.overlapped_buckets)
        results["auto_overlap"] = np.array(strategy.overlap)  # the default, "auto"
        results["buckets"] = np.array(overlapped.buckets_started)
        model = small_cnn("dropout")
        first_mask = _FirstMask()
        # Only rank 0 writes: checkpoints and saved models named after the rank show it.
        checkpoint = cf.callbacks.ModelCheckpoint(os.path.join(outdir, f"ckpt-rank{rank}.cnnfast"))
        model.fit(x, y, batch_size=BATCH_SIZE, epochs=1, verbose=0, distributed=strategy,
                  callbacks=[first_mask, checkpoint])
        model.save(os.path.join(outdir, f"saved-rank{rank}.cnnfast"))
        results["dropout_weights"] = model.flat_weights().copy()
        results["dropout_first_mask"] = first_mask.mask
        model = small_cnn("plan")
        before = model.optimizer.iterations
        model.fit(x, y, batch_size=BATCH_SIZE, epochs=3, verbose=0, distributed=strategy,
                  callbacks=[_StopOnRank1(rank)])
        results["steps_after_stop"] = np.array(model.optimizer.iterations - before)
        results["threads"] = np.array(cf.get_num_threads())
        np.savez(os.path.join(outdir, f"rank{rank}.npz"), **results)
        return 0
    model = small_cnn("plan")
    x, y, *_ = data()
    model.fit(x, y, batch_size=BATCH_SIZE, epochs=1, verbose=0, distributed=strategy,
              callbacks=[_Fail(mode, rank)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
