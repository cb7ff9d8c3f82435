import os
import pathlib

import numpy as np
import pytest

SHARED_DATASETS = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def mnist_dir():
    path = pathlib.Path(os.environ.get("CNNFAST_MNIST_DIR", SHARED_DATASETS / "mnist"))
    if not (path / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found at {path} (../shared/datasets/mnist or $CNNFAST_MNIST_DIR)")
    return path


def pytest_terminal_summary(terminalreporter):
    """Print how many configurations/inputs the hardening tests tried (tests/counts.py)."""
    from counts import COUNTS

    if not COUNTS:
        return
    terminalreporter.section("cnnfast hardening counts")
    for kind, n in sorted(COUNTS.items()):
        terminalreporter.write_line(f"{kind}: {n}")
    out = os.environ.get("CNNFAST_COUNTS_FILE")
    if out:
        import json

        pathlib.Path(out).write_text(json.dumps(dict(COUNTS), indent=1, sort_keys=True) + "\n")
