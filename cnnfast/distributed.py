"""Data-parallel training over MPI (mpi4py, the optional ``mpi`` extra).

Every rank runs the same script on the same data; ``model.fit(..., distributed=True)`` (or
``distributed=MPIStrategy(timeout=...)``) then trains one model across them:

- rank 0 broadcasts the random state (so the shuffle order and augmentation draws agree; each
  rank turns the shared dropout seeds into its own masks), then the weights and the optimizer
  state;
- each global batch (``batch_size`` samples, drawn in the shared-seed order) is split into
  ``size`` contiguous shards, one per rank, so every rank runs the same number of steps;
- after the backward pass of each step, one in-place ``Iallreduce`` sums the flat gradient
  buffer (``Model.flat_gradients()``) and the result is scaled by ``1/size``; the loss and
  accuracy sums are reduced beside it, so every rank's callbacks see the same logs;
- ``stop_training`` (EarlyStopping, Ctrl-C, any callback) is agreed on after every batch and
  epoch: one rank stopping stops them all;
- only rank 0 prints and writes files (checkpoints and saved models are written atomically).

Losses are means over the batch, so when the shards are equal the mean of the ranks' gradients
is the gradient of the global batch. When ``batch_size`` is not a multiple of ``size`` (or the
last batch is short), each rank's gradient is first weighted by ``size * n_rank / n_global``,
which keeps the reduced gradient that of the global batch (sample weights included); a final
batch with fewer samples than ranks is skipped on every rank.

Failure: every wait on another rank polls a non-blocking request against a deadline
(``timeout`` seconds). A rank that raises prints its traceback and aborts the job
(``MPI_Abort``); a rank that dies or stalls is caught by the others' deadline, and rank 0 names
the ranks that did not reach the step. Either way the job ends with a non-zero status, never a
hang.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from cnnfast import random as cf_random

# Environment variables that MPI launchers set in every rank: Open MPI's mpirun, MPICH/Hydra
# and Intel MPI (PMI_*), PMIx launchers (srun --mpi=pmix, prterun).
_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")
_RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK")
_ARRIVAL_TAG = 2107
_ABORT_GRACE = 0.5  # seconds between the last message and MPI_Abort

_writes_suppressed = False
_default: MPIStrategy | None = None


def launched_under_mpi() -> bool:
    """True when this process was started by an MPI launcher (mpirun, mpiexec, srun) as one of
    two or more ranks (or of an unknown number), judged from the launcher's environment
    variables (no MPI import)."""
    sizes = [int(os.environ[name]) for name in _SIZE_VARIABLES
             if os.environ.get(name, "").isdigit()]
    if sizes:
        return max(sizes) > 1
    # PMIx (srun --mpi=pmix) sets the rank but not always the size: MPI itself will say
    # (one rank alone trains as one process would).
    return any(name in os.environ for name in _RANK_VARIABLES)


def writes_suppressed() -> bool:
    """True on a rank other than 0 of a distributed run: saving then writes nothing."""
    return _writes_suppressed


def _import_mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ImportError(
            "cnnfast.distributed needs mpi4py and an MPI library: pip install 'cnnfast[mpi]' "
            "(mpi4py and MPICH from pip), or mpi4py over the system's MPI (e.g. Debian's "
            f"openmpi-bin libopenmpi-dev); the import failed: {err}") from None
    return MPI


class MPIStrategy:
    """Data-parallel training across the ranks of an MPI communicator.

    Parameters
    ----------
    timeout : float, default 300
        Seconds any rank waits for the others at a collective (the first one, at the start of
        fit, included) before it aborts the whole job naming the step. Choose more than the
        slowest step plus the largest difference in start-up time between ranks.
    threads : int, "auto" or None, default "auto"
        Kernel threads of this rank: "auto" gives it its available cores (its CPU affinity)
        divided by the ranks on the node that share them (``mpirun --bind-to none`` leaves
        every rank all cores); None leaves the setting as it is.
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``.

    Notes
    -----
    Creating a strategy on two or more ranks installs a ``sys.excepthook`` that aborts the
    job after printing the traceback, so an uncaught exception on one rank cannot leave the
    others waiting.
    """

    def __init__(self, timeout: float = 300.0, threads: int | str | None = "auto",
                 comm: Any = None, overlap: bool | str = "auto",
                 bucket_mb: float = 4.0) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"MPIStrategy: timeout must be a positive number of seconds, "
                             f"got {timeout!r}")
        if not (threads is None or threads == "auto" or
                (isinstance(threads, int) and not isinstance(threads, bool) and threads > 0)):
            raise ValueError(f"MPIStrategy: threads must be a positive int, 'auto' or None, "
                             f"got {threads!r}")
        if overlap not in (True, False, "auto"):
            raise ValueError(f"MPIStrategy: overlap must be True, False or 'auto', got {overlap!r}")
        if isinstance(bucket_mb, bool) or not isinstance(bucket_mb, (int, float)) or \
                not bucket_mb > 0:
            raise ValueError(f"MPIStrategy: bucket_mb must be a positive number, got {bucket_mb!r}")
        self.MPI = _import_mpi()
        self.comm = self.MPI.COMM_WORLD if comm is None else comm
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()
        self.timeout = float(timeout)
        # Point-to-point "I reached step s" messages to rank 0 travel on their own
        # communicator, apart from the collectives and from any message of the user's.
        self._arrivals = self.comm.Dup()
        self._step = 0
        self.where = "start-up"
        self.batch_samples = 0  # samples of the current global batch (fit's counts)
        self.allreduce_seconds = 0.0  # time spent waiting for the gradient allreduce
        self._synced_model: int | None = None
        # Reduce gradients while backward goes on (see _Buckets). "auto" does with two ranks or
        # more: measured here (bench/results/distributed.md), VGG16-CIFAR on 2 ranks of one
        # machine waited 44 ms a step for the allreduce after backward and 13 ms with buckets
        # (111 -> 116 images/s); a model whose gradients fit one bucket is reduced whole
        # after backward either way. False reduces the whole buffer after backward.
        self.overlap = bool(overlap) and self.size > 1
        self.bucket_floats = max(1, int(bucket_mb * 2**20 / 4))
        self._buckets: _Buckets | None = None
        self._buckets_active = False
        self.buckets_started = 0  # gradient buckets reduced, and of them, started in backward
        self.overlapped_buckets = 0
        if self.size > 1:
            global _writes_suppressed
            _writes_suppressed = self.rank != 0
            self._install_excepthook()
        if threads is not None:
            from cnnfast import set_num_threads
            set_num_threads(self._auto_threads() if threads == "auto" else int(threads))

    @property
    def is_root(self) -> bool:
        """True on rank 0, the rank that prints and writes files."""
        return self.rank == 0

    def __repr__(self) -> str:
        return f"MPIStrategy(rank={self.rank}, size={self.size}, timeout={self.timeout})"

    # -- failure ----------------------------------------------------------------------------
    def abort(self, message: str) -> None:
        """Print `message` naming this rank and abort every rank of the job (exit status 1)."""
        print(f"cnnfast.distributed: rank {self.rank} of {self.size}: {message}; aborting the "
              "job", file=sys.stderr, flush=True)
        sys.stdout.flush()
        # The launcher forwards output through pipes and stops forwarding once it tears the
        # job down: give it a moment to pass on what was just written.
        time.sleep(_ABORT_GRACE)
        self.comm.Abort(1)
        os._exit(1)  # MPI_Abort may return before the launcher ends this process

    def _install_excepthook(self) -> None:
        previous = sys.excepthook

        def hook(kind, value, tb):
            previous(kind, value, tb)
            self.abort(f"uncaught {kind.__name__} (at {self.where})")

        sys.excepthook = hook

    def fail_on_exception(self, err: BaseException) -> None:
        """Called by fit when `err` escapes training on this rank: with other ranks waiting on
        this one, print the traceback and abort the job; alone, return (fit re-raises)."""
        if self.size == 1:
            return
        print(f"cnnfast.distributed: rank {self.rank} of {self.size}: raised "
              f"{type(err).__name__} at {self.where}: {err}", file=sys.stderr, flush=True)
        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
        self.abort(f"raised {type(err).__name__} at {self.where}: {err}")

    def _wait(self, requests: list[Any], what: str, tracked: list[Any] | None = None) -> None:
        """Wait for every request, polling, until the deadline; then abort naming `what`.
        `tracked` (rank 0): arrival receives from ranks 1.., to name the ones missing."""
        deadline = time.monotonic() + self.timeout
        if self.rank != 0:
            # Rank 0 can name the missing rank: let its message come first.
            deadline += min(5.0, 0.5 * self.timeout)
        pause = 0.0
        while not self.MPI.Request.Testall(requests):
            if time.monotonic() > deadline:
                self._timed_out(what, tracked)
            # Short sleeps, growing to 1 ms: a waiting rank must not take the cores of a
            # rank still computing (ranks may share a machine).
            time.sleep(pause)
            pause = min(1e-3, pause + 5e-5)

    def _timed_out(self, what: str, tracked: list[Any] | None) -> None:
        if tracked is not None:
            missing = [r + 1 for r, req in enumerate(tracked) if not req.Test()]
            who = (f"rank{'s' if len(missing) > 1 else ''} "
                   f"{', '.join(map(str, missing))} did not reach it" if missing else
                   "every rank reached it but the collective did not complete")
        else:
            who = "rank 0 or another rank did not reach it (rank 0's message names the rank)"
        self.abort(f"{what} at {self.where}: no reply within {self.timeout:g} s: {who} "
                   "(died, stalled or raised)")

    # -- start of fit -----------------------------------------------------------------------
    def _auto_threads(self) -> int:
        """This rank's cores, shared out among the node's ranks whose affinity overlaps."""
        import cnnfast

        cores = os.cpu_count() or 1
        # As the process started: OpenMP may since have pinned this thread to one CPU.
        mine = set(cnnfast._AFFINITY)
        if self.size == 1:
            return max(1, len(mine))
        node = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)
        try:
            width = max(cores, max(mine) + 1)
            mask = np.zeros(width, np.uint8)
            mask[sorted(mine)] = 1
            masks = np.zeros((node.Get_size(), width), np.uint8)
            self._wait([node.Iallgather(mask, masks)], "the CPU affinity exchange")
            sharing = int(np.count_nonzero((masks & mask).any(axis=1)))
        finally:
            node.Free()
        return max(1, len(mine) // max(1, sharing))

    def broadcast_random_state(self) -> None:
        """Give every rank rank 0's cnnfast random state (shuffle order, dropout seeds,
        augmentation draws)."""
        if self.size == 1:
            return
        state = np.frombuffer(repr(cf_random.get_state()).encode(), np.uint8) \
            if self.is_root else None
        length = np.array([0 if state is None else state.size], np.int64)
        self._wait([self.comm.Ibcast(length, root=0)], "the random state broadcast")
        buf = state.copy() if state is not None else np.empty(int(length[0]), np.uint8)
        self._wait([self.comm.Ibcast(buf, root=0)], "the random state broadcast")
        if not self.is_root:
            import ast
            cf_random.set_state(ast.literal_eval(buf.tobytes().decode()))

    def broadcast_model(self, model: Any) -> None:
        """Give every rank rank 0's weights (every weight, frozen ones too), optimizer state
        and iteration count, and Dropout call counters. Done once per model (by fit)."""
        if self.size == 1 or self._synced_model == id(model):
            return
        model._pack_parameters()
        n = model._trainable_floats
        buffers = [model._weight_arena]
        buffers += list(model.optimizer._flat_state(model._weight_arena[:n],
                                                    model._trainable_layout))
        counters = np.array([model.optimizer.iterations]
                            + [getattr(layer, "_calls", 0) for layer in model.layers], np.int64)
        buffers.append(counters)
        self._wait([self.comm.Ibcast(b, root=0) for b in buffers],
                   "the broadcast of the initial weights")
        model.optimizer.iterations = int(counters[0])
        for layer, calls in zip(model.layers, counters[1:]):
            if hasattr(layer, "_calls"):
                layer._calls = int(calls)
        self._synced_model = id(model)

    # -- each step --------------------------------------------------------------------------
    def shard_batches(self, batches: Iterable[Any]) -> Iterator[Any]:
        """This rank's contiguous share of every batch (a tuple ``(x, y[, w])`` of sliceable
        arrays). Batches with fewer samples than ranks are skipped, on every rank alike."""
        for batch in batches:
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                yield batch  # malformed: fit's check raises on it
                continue
            n = len(batch[0])
            if n < self.size:
                continue
            lo, hi = n * self.rank // self.size, n * (self.rank + 1) // self.size
            self.batch_samples = n
            yield tuple(None if part is None else part[lo:hi] for part in batch)

    def begin_step(self, grads: np.ndarray, layout: list[tuple[int, tuple[int, ...]]],
                   n_local: int) -> Any:
        """Before a plan step: the callback the plan calls as each layer's gradients become
        final (``TrainPlan.step(on_gradients=...)``), which starts reducing the buckets of the
        gradient arena that are complete; None when this strategy does not overlap."""
        if not self.overlap:
            return None
        key = (grads.__array_interface__["data"][0], len(grads), tuple(s for s, _ in layout))
        if self._buckets is None or self._buckets.key != key:
            self._buckets = _Buckets(self, grads, layout, key)
        self._buckets.begin(self._scale(n_local))
        self._buckets_active = True
        return self._buckets.ready

    def _scale(self, n_local: int) -> float:
        """This rank's weight in the sum: size * n_rank / n_global (1 for equal shards)."""
        n_global = self.batch_samples
        return 1.0 if n_local * self.size == n_global else n_local * self.size / n_global

    def reduce_step(self, grads: np.ndarray, loss: float, sums: list[float],
                    n_local: int) -> tuple[float, list[float]]:
        """Sum `grads` (this rank's mean gradient over its `n_local` samples) across ranks in
        place and scale it into the gradient of the global batch; return the global batch's
        mean loss and metric sums (each metric's sum over this rank's samples, summed). A
        non-finite loss on any rank makes the returned loss non-finite."""
        n_global = self.batch_samples
        if self.size == 1:
            return loss, sums
        self._step += 1
        buckets, self._buckets_active = (self._buckets if self._buckets_active else None), False
        stats = np.array([loss * n_local, *sums], np.float64)
        requests, tracked = self._arrival_requests()
        started = time.perf_counter()
        if buckets is not None:  # the rest of the buckets, in the order every rank uses
            requests += buckets.finish()
        else:
            if n_local * self.size != n_global:
                grads *= np.float32(n_local * self.size / n_global)
            requests.append(self.comm.Iallreduce(self.MPI.IN_PLACE, grads, op=self.MPI.SUM))
        requests.append(self.comm.Iallreduce(self.MPI.IN_PLACE, stats, op=self.MPI.SUM))
        self._wait(requests, "the gradient allreduce", tracked)
        self.allreduce_seconds += time.perf_counter() - started
        grads *= np.float32(1.0 / self.size)
        return float(stats[0] / n_global), [float(v) for v in stats[1:]]

    def _arrival_requests(self) -> tuple[list[Any], list[Any] | None]:
        """Rank r > 0 tells rank 0 it reached this step; rank 0 posts the receives, so on a
        timeout it can name the ranks that did not."""
        if self.rank != 0:
            self._arrival_out = np.array([self._step], np.int64)
            return [self._arrivals.Isend(self._arrival_out, dest=0, tag=_ARRIVAL_TAG)], None
        self._arrival_in = np.zeros((self.size - 1, 1), np.int64)
        tracked = [self._arrivals.Irecv(self._arrival_in[r - 1], source=r, tag=_ARRIVAL_TAG)
                   for r in range(1, self.size)]
        return list(tracked), tracked

    def agree(self, flag: bool, what: str = "the stop decision") -> bool:
        """True on every rank when `flag` is true on any (a logical-or allreduce)."""
        if self.size == 1:
            return bool(flag)
        value = np.array([1 if flag else 0], np.int32)
        self._wait([self.comm.Iallreduce(self.MPI.IN_PLACE, value, op=self.MPI.MAX)], what)
        return bool(value[0])

    def evaluate(self, model: Any, batches: Iterable[tuple]) -> list[float] | None:
        """[mean loss, each metric's mean] over (x, y, w) batches sharded across the ranks
        (each evaluates its share), as Model._evaluate_batches gives for one process; None
        when there were none."""
        # Samples, the sum of weighted losses, then each metric's sum.
        sums = np.zeros(2 + len(model.metrics), np.float64)
        for xb, yb, wb in batches:
            if len(xb) == 0:
                continue
            out = model._forward(xb, training=False)
            sums[0] += len(xb)
            sums[1] += model._weighted_loss(out, yb, None, wb) * len(xb)
            sums[2:] += model._metric_sums(out, yb)
        if self.size > 1:
            self._wait([self.comm.Iallreduce(self.MPI.IN_PLACE, sums, op=self.MPI.SUM)],
                       "the validation allreduce")
        if sums[0] == 0:
            return None
        return [float(v / sums[0]) for v in sums[1:]]

    def shard_arrays(self, *arrays: Any) -> tuple[Any, ...]:
        """This rank's contiguous share of arrays of equal length (validation data)."""
        n = len(arrays[0])
        lo, hi = n * self.rank // self.size, n * (self.rank + 1) // self.size
        return tuple(None if a is None else a[lo:hi] for a in arrays)

    @contextlib.contextmanager
    def quiet_unless_root(self) -> Iterator[None]:
        """Rank 0 prints; the others' standard output goes to /dev/null meanwhile."""
        if self.is_root:
            yield
            return
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            yield


class _Buckets:
    """The gradient arena cut into buckets of whole tensors (about ``bucket_mb`` each), from
    its end down: backward finishes the last layers first, so their bucket can be summed
    across ranks while the earlier layers' backward runs. Every rank starts the same buckets in
    the same order (0, 1, ...: a bucket starts once it and every bucket before it are
    complete), so the collectives match whatever the timing; the rest start after backward."""

    def __init__(self, strategy: MPIStrategy, grads: np.ndarray,
                 layout: list[tuple[int, tuple[int, ...]]], key: tuple) -> None:
        self.strategy, self.grads, self.key = strategy, grads, key
        starts = [start for start, _ in layout]
        # A bucket runs from its lowest tensor's start to the next bucket up (alignment
        # padding included, so the buckets tile the arena).
        self.bounds: list[tuple[int, int]] = []
        self.bucket_of: dict[int, int] = {}
        self.needed: list[int] = []
        hi, members = len(grads), 0
        for i in reversed(range(len(starts))):
            self.bucket_of[starts[i]] = len(self.bounds)
            members += 1
            if hi - starts[i] >= strategy.bucket_floats or i == 0:
                lo = 0 if i == 0 else starts[i]
                self.bounds.append((lo, hi))
                self.needed.append(members)
                hi, members = lo, 0

    def begin(self, scale: float) -> None:
        self.scale = np.float32(scale)
        self.done = [0] * len(self.bounds)
        self.started = 0
        self.requests: list[Any] = []

    def ready(self, offset: int, count: int) -> None:
        """TrainPlan's callback: the tensor at `offset` is final."""
        b = self.bucket_of.get(int(offset))
        if b is None:
            return  # not a trainable tensor of the arena
        self.done[b] += 1
        while self.started < len(self.bounds) and \
                self.done[self.started] >= self.needed[self.started]:
            self._start(self.started)
            self.strategy.overlapped_buckets += 1
        if self.requests:  # let MPI move the started reductions along
            self.strategy.MPI.Request.Testall(self.requests)

    def _start(self, b: int) -> None:
        lo, hi = self.bounds[b]
        part = self.grads[lo:hi]
        if self.scale != 1:
            part *= self.scale
        mpi = self.strategy.MPI
        self.requests.append(self.strategy.comm.Iallreduce(mpi.IN_PLACE, part, op=mpi.SUM))
        self.started = b + 1
        self.strategy.buckets_started += 1

    def finish(self) -> list[Any]:
        """Start the buckets backward did not complete (all of them after a non-finite loss);
        the requests to wait for."""
        while self.started < len(self.bounds):
            self._start(self.started)
        return self.requests


def strategy_of(distributed: Any) -> MPIStrategy | None:
    """fit's `distributed` argument as a strategy: False/None none, True the process's
    default MPIStrategy (made once), or the MPIStrategy given."""
    global _default
    if distributed is None or distributed is False:
        return None
    if distributed is True:
        if _default is None:
            _default = MPIStrategy()
        return _default
    if isinstance(distributed, MPIStrategy):
        return distributed
    raise TypeError(f"fit: distributed must be a bool or a cnnfast.distributed.MPIStrategy, "
                    f"got {type(distributed).__name__}")
