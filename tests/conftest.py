import os
import pathlib

import numpy as np
import pytest

from cnnfast import _core

SHARED_DATASETS = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def restore_threads():
    """For tests that change the kernels' thread count: the default (0) is restored after."""
    yield
    _core.set_num_threads(0)


def _available_simd_paths(select) -> list[str]:
    """The paths `select` (a _core.set_*_simd_path) accepts on this CPU; "auto" restored after.

    The setters say no either by raising ValueError (elementwise) or by returning False (pool2d).
    """
    paths = []
    for path in ("baseline", "avx2", "avx512"):
        try:
            accepted = select(path) is not False
        except ValueError:
            accepted = False
        if accepted:
            paths.append(path)
    select("auto")
    return paths


def _simd_path_fixture(select):
    @pytest.fixture(params=_available_simd_paths(select))
    def fixture(request):
        select(request.param)
        yield request.param
        select("auto")

    return fixture


# Run a test once per compiled SIMD path this CPU has, for the element-wise kernels (activations,
# softmax, losses, dropout) and for pooling.
simd_path = _simd_path_fixture(_core.set_elementwise_simd_path)
pool_simd_path = _simd_path_fixture(_core.set_pool2d_simd_path)


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
