"""Data-parallel training over MPI (cnnfast/distributed.py): 2 ranks on this machine.

The MPI runs start `mpiexec -n 2` on tests/mpi_worker.py; they need mpi4py and an MPI launcher
(`pip install '.[mpi]' mpich` gives both). Without them those tests skip, saying so.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mpi_worker
import numpy as np
import pytest

import cnnfast as cf
from cnnfast import distributed

WORKER = Path(__file__).resolve().parent / "mpi_worker.py"

# Seconds a rank waits for the others before aborting, in the failure runs; the whole run
# (start-up of 2 Python processes importing cnnfast, on 2 shared cores) must end well within
# LIMIT.
TIMEOUT = 4.0
LIMIT = 90.0


def _mpiexec() -> list[str] | None:
    """The launcher command for 2 ranks on this machine, or None."""
    exe = Path(sys.executable).parent / "mpiexec"
    path = str(exe) if exe.exists() else shutil.which("mpiexec") or shutil.which("mpirun")
    if path is None:
        return None
    version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                             check=False)
    command = [path, "-n", "2"]
    if "Open MPI" in version.stdout + version.stderr or "OpenRTE" in version.stdout:
        # Open MPI refuses root without the flag, and with 2 ranks pins each to one core.
        command += ["--allow-run-as-root", "--bind-to", "none", "--oversubscribe"]
    return command


MPIEXEC = _mpiexec() if importlib.util.find_spec("mpi4py") else None
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None,
    reason="needs mpiexec (pip install mpich, or the system's MPI)" if
    importlib.util.find_spec("mpi4py") else "needs mpi4py (pip install '.[mpi]')")


def _run(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ)
    # The workers import the cnnfast this test imports (an install, or the source tree).
    env["PYTHONPATH"] = os.pathsep.join([str(Path(cf.__file__).resolve().parent.parent),
                                         env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    started = time.monotonic()
    done = subprocess.run([*MPIEXEC, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=LIMIT + 30, check=False)
    return done, time.monotonic() - started


def _worker(mode: str, outdir: Path, timeout: float = 60.0):
    return _run([sys.executable, str(WORKER), mode, str(outdir), str(timeout)], outdir)


@needs_mpi
def test_two_ranks_train_like_one_process_on_the_global_batches(tmp_path):
    done, _ = _worker("train", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    for key in ranks[0].files:
        if key == "dropout_first_mask":
            # The ranks share one seed sequence; each draws its own stream of masks.
            assert not np.array_equal(ranks[0][key], ranks[1][key])
            continue
        # After the allreduce every rank holds the same gradient and applies the same update.
        assert np.array_equal(ranks[0][key], ranks[1][key]), key
    for name in ("plan", "python"):
        model = mpi_worker.small_cnn(name)
        history = mpi_worker.train(model, False)  # one process, the same global batches
        got = ranks[0][f"{name}_weights"]
        # The ranks' gradients are means over 4 (or 1 and 2) samples averaged across 2 ranks,
        # one process's a mean over 8 (or 3): the same sum in another order, float32 rounding
        # (~1e-7 relative) per step over 10 steps (SGD lr 0.1 / Adam lr 0.01) of weights
        # below 1; observed max 1.2e-7 (SGD).
        np.testing.assert_allclose(got, model.flat_weights(), rtol=0, atol=2e-6,
                                   err_msg=name)
        assert not np.array_equal(got, mpi_worker.small_cnn(name).flat_weights())  # it trained
        for key, values in history.items():
            # Loss sums in float64 of float32 losses; accuracy counts are exact.
            np.testing.assert_allclose(ranks[0][f"{name}_{key}"], values, rtol=1e-6, atol=0,
                                       err_msg=f"{name} {key}")
    # Buckets reduced during backward: the same sums, so the same weights bit for bit, and
    # regularizers (added as each layer's gradients become final) are counted once. Most
    # buckets started inside backward (all but those of the first layer's tensors, which
    # complete last, and any skipped batch).
    assert np.array_equal(ranks[0]["l2_overlap_weights"], ranks[0]["l2_whole_weights"])
    assert not np.array_equal(ranks[0]["l2_whole_weights"],
                              mpi_worker.small_cnn("plan_l2").flat_weights())
    assert int(ranks[0]["overlapped_buckets"]) > 0.5 * int(ranks[0]["buckets"]) > 0
    assert bool(ranks[0]["auto_overlap"])  # "auto" overlaps with two ranks or more
    # Only rank 0 wrote its checkpoint and saved model; they hold the trained weights.
    assert sorted(p.name for p in tmp_path.glob("*.cnnfast")) == ["ckpt-rank0.cnnfast",
                                                                 "saved-rank0.cnnfast"]
    for name in ("ckpt-rank0.cnnfast", "saved-rank0.cnnfast"):
        saved = cf.load_model(tmp_path / name)
        assert np.array_equal(saved.flat_weights(), ranks[0]["dropout_weights"]), name
    # A callback set stop_training on rank 1 only, after its second batch: both ranks stop.
    assert int(ranks[0]["steps_after_stop"]) == 2
    assert int(ranks[0]["threads"]) == 1


@needs_mpi
@pytest.mark.parametrize("mode", ["raise", "kill", "stall"])
def test_a_failing_rank_ends_the_job_within_the_timeout(tmp_path, mode):
    done, seconds = _worker(mode, tmp_path, TIMEOUT)
    assert done.returncode != 0, done.stdout + done.stderr
    assert seconds < LIMIT, f"{mode}: the job took {seconds:.0f} s"
    if mode == "raise":
        assert ("rank 1 of 2: raised RuntimeError at fit: epoch 1, batch 3: worker: rank 1 "
                "fails on purpose") in done.stderr, done.stderr
    if mode == "stall":
        assert ("rank 0 of 2: the gradient allreduce at fit: epoch 1, batch 3: no reply within "
                f"{TIMEOUT:g} s: rank 1 did not reach it") in done.stderr, done.stderr
        assert seconds >= TIMEOUT


@needs_mpi
def test_cnnfast_train_under_mpiexec_trains_data_parallel(tmp_path):
    out = tmp_path / "lenet5.cnnfast"
    done, _ = _run([sys.executable, "-m", "cnnfast", "train", "lenet5", "--data", "sample",
                    "--epochs", "1", "--seed", "1", "--out", str(out)], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    # Only rank 0 prints and saves.
    assert done.stdout.count("test accuracy:") == 1, done.stdout
    assert done.stdout.count("Epoch 1/1") == 1, done.stdout
    assert "2 MPI ranks of 1 threads" in done.stdout, done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet5.cnnfast"]
    accuracy = float(done.stdout.split("test accuracy: ")[1].split("%")[0])
    assert accuracy > 80.0  # one epoch of LeNet-5 on the sample; 1 process reads ~90%


@pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None,
                    reason="needs mpi4py (pip install '.[mpi]')")
def test_one_process_with_distributed_true_trains_as_without(tmp_path):
    # Without a launcher MPI starts one rank (a singleton): fit must give the weights of a
    # plain fit bit for bit (no scaling, no reordering).
    code = ("import sys, numpy as np, mpi_worker as w\n"
            "a = w.small_cnn('plan'); w.train(a, True)\n"
            "b = w.small_cnn('plan'); w.train(b, False)\n"
            "sys.exit(0 if np.array_equal(a.flat_weights(), b.flat_weights()) else 3)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(WORKER.parent), str(Path(cf.__file__).resolve().parent.parent),
         os.environ.get("PYTHONPATH", "")]))
    for name in (*distributed._SIZE_VARIABLES, *distributed._RANK_VARIABLES):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=LIMIT, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_launcher_detection_reads_the_launchers_variables(monkeypatch):
    for name in (*distributed._SIZE_VARIABLES, *distributed._RANK_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched_under_mpi()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "1")  # mpirun -n 1: one process, no peers
    assert not distributed.launched_under_mpi()
    for name, value in (("OMPI_COMM_WORLD_SIZE", "4"), ("PMI_SIZE", "2"), ("PMIX_RANK", "0")):
        monkeypatch.delenv("OMPI_COMM_WORLD_SIZE", raising=False)
        monkeypatch.setenv(name, value)
        assert distributed.launched_under_mpi(), name
        monkeypatch.delenv(name)


def test_fit_rejects_a_distributed_argument_of_another_type():
    model = mpi_worker.small_cnn("plan")
    x, y, *_ = mpi_worker.data()
    with pytest.raises(TypeError, match="distributed must be a bool or a cnnfast.distributed"):
        model.fit(x, y, epochs=1, verbose=0, distributed="mpi")


def test_strategy_checks_its_arguments_before_importing_mpi():
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        distributed.MPIStrategy(timeout=0)
    with pytest.raises(ValueError, match="threads must be a positive int"):
        distributed.MPIStrategy(threads=0)
