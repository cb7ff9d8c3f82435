"""The CUDA backend's build and device queries (cnnfast/cuda.py, cnnfast/backend.py,
src/cuda/, CMakeLists.txt's CNNFAST_CUDA).

This machine has nvcc and no GPU: the module builds, and every query answers "no device" with
the runtime's reason. The build tests configure CMake (no compilation) and skip without cmake;
the ones that need a CUDA compiler skip without nvcc.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cnnfast as cf

ROOT = Path(__file__).resolve().parents[1]
HAVE_NVCC = shutil.which("nvcc") is not None
HAVE_CMAKE = shutil.which("cmake") is not None and (ROOT / "CMakeLists.txt").exists()


def _module_built() -> bool:
    try:
        from cnnfast import _cuda  # noqa: F401
    except ImportError:
        return False
    return True


def test_queries_agree_and_never_crash():
    count = cf.cuda.device_count()
    why = cf.cuda.why_unavailable()
    assert isinstance(count, int) and count >= 0
    assert cf.cuda.is_available() == (count > 0)
    assert (why is None) == (count > 0)
    if count == 0:
        assert why  # a reason, not an empty string
        with pytest.raises(RuntimeError, match="no CUDA device 0"):
            cf.cuda.device_name(0)
    else:
        assert cf.cuda.device_name(0)
    with pytest.raises(TypeError, match="index must be an int"):
        cf.cuda.device_name("0")


@pytest.mark.skipif(not _module_built(), reason="cnnfast was built without cnnfast._cuda "
                    "(no nvcc at build time, or CNNFAST_CUDA=OFF)")
def test_module_without_a_driver_gives_the_runtimes_reason():
    from cnnfast import _cuda

    assert _cuda.runtime_version >= 12000
    if _cuda.device_count() == 0:
        # cudaGetDeviceCount's error, by name: no driver here (or no device on a driver host).
        reason = cf.cuda.why_unavailable()
        assert "cudaError" in reason or "0 devices" in reason, reason
        with pytest.raises(RuntimeError, match="cudaError"):
            _cuda.device_name(0)


@pytest.mark.skipif(not _module_built() or shutil.which("ldd") is None,
                    reason="needs cnnfast._cuda and ldd")
def test_importing_needs_no_cuda_library():
    # The runtime is linked statically; the CPU module never links CUDA at all.
    from cnnfast import _core, _cuda

    for module in (_cuda, _core):
        libs = subprocess.run(["ldd", module.__file__], capture_output=True, text=True,
                              check=True).stdout
        assert "libcudart" not in libs and "libcuda." not in libs, (module.__name__, libs)


def test_set_backend():
    assert cf.get_backend() == "cpu"
    cf.set_backend("CPU")
    assert cf.get_backend() == "cpu"
    with pytest.raises(ValueError, match=r"backend must be one of \['cpu', 'cuda'\], got 'tpu'"):
        cf.set_backend("tpu")
    if not cf.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device can be used: ") as err:
            cf.set_backend("cuda")
        assert cf.cuda.why_unavailable() in str(err.value)
    assert cf.get_backend() == "cpu"


@pytest.mark.parametrize("value,error", [
    ("cuda", "RuntimeError: CNNFAST_BACKEND=cuda: set_backend('cuda'): no CUDA device"),
    ("gpu", "ValueError: CNNFAST_BACKEND must be one of ['cpu', 'cuda'], got 'gpu'"),
    ("cpu", None),
])
def test_backend_from_the_environment(value, error, tmp_path):
    if value == "cuda" and cf.cuda.is_available():
        pytest.skip("a CUDA device is usable here")
    env = dict(os.environ, CNNFAST_BACKEND=value,
               PYTHONPATH=os.pathsep.join([str(Path(cf.__file__).resolve().parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    # cwd: not the source tree, whose cnnfast/ (without its compiled core) would come first.
    done = subprocess.run([sys.executable, "-c", "import cnnfast; print(cnnfast.get_backend())"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False)
    if error is None:
        assert done.returncode == 0 and done.stdout.strip() == "cpu", done.stderr
    else:
        assert done.returncode != 0 and error in done.stderr, done.stderr


def _configure(build: Path, *args: str, env: dict[str, str] | None = None):
    pybind11 = pytest.importorskip("pybind11", reason="configuring needs pybind11 (the test "
                                   "extra installs it)")

    return subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(build), "-DCNNFAST_BUILD_CAPI=OFF",
         f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", *args],
        capture_output=True, text=True, timeout=300, check=False,
        env={**{k: v for k, v in os.environ.items() if k not in ("CUDACXX", "CNNFAST_CUDA")},
             **(env or {})})


@pytest.mark.skipif(not HAVE_CMAKE, reason="needs cmake and the source tree")
def test_cmake_option(tmp_path):
    missing = {"CUDACXX": str(tmp_path / "no" / "nvcc")}  # as on a machine without nvcc
    # AUTO without a CUDA compiler: the CPU build goes on.
    auto = _configure(tmp_path / "auto", env=missing)
    assert auto.returncode == 0, auto.stderr
    assert "no CUDA compiler found; building without cnnfast._cuda" in auto.stdout
    # ON requires one.
    on = _configure(tmp_path / "on", "-DCNNFAST_CUDA=ON", env=missing)
    assert on.returncode != 0 and "CNNFAST_CUDA=ON but no CUDA compiler" in on.stderr
    # The environment variable sets the default; OFF never looks for nvcc.
    off = _configure(tmp_path / "off", env={"CNNFAST_CUDA": "OFF"})
    assert off.returncode == 0 and "CUDA compiler" not in off.stdout, off.stdout
    bad = _configure(tmp_path / "bad", "-DCNNFAST_CUDA=maybe")
    assert bad.returncode != 0 and "CNNFAST_CUDA must be AUTO, ON or OFF" in bad.stderr
    if HAVE_NVCC:
        # The trap: the first configure cached CMAKE_CUDA_COMPILER=NOTFOUND; with nvcc
        # reachable, configuring again finds it.
        again = _configure(tmp_path / "auto")
        assert again.returncode == 0, again.stderr
        assert "building cnnfast._cuda with" in again.stdout
        assert "80-real;90" in again.stdout  # SASS for 80 and 90, PTX of 90
