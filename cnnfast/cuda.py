"""The CUDA backend's device queries: ``cf.cuda.is_available()``, ``device_count()``,
``device_name()``, ``why_unavailable()``.

The CUDA module ``cnnfast._cuda`` is built when the build finds nvcc (CMake option
``CNNFAST_CUDA=AUTO|ON|OFF``, default AUTO). It links the CUDA runtime statically, so importing
it needs no CUDA library; without a device or a driver every query answers False or 0, and
:func:`why_unavailable` says why. Nothing here ever crashes the interpreter.

>>> import cnnfast as cf
>>> cf.cuda.is_available(), cf.cuda.why_unavailable()   # on a machine without a GPU
(False, 'the CUDA runtime found no usable device (cudaErrorInsufficientDriver: ...)')
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["device_count", "device_name", "is_available", "why_unavailable"]


def _module() -> tuple[ModuleType | None, str]:
    """(cnnfast._cuda, "") or (None, why it cannot be imported)."""
    try:
        from cnnfast import _cuda
    except ImportError as err:
        if getattr(err, "name", None) == "cnnfast._cuda":
            return None, ("this cnnfast was built without its CUDA module (no nvcc at build "
                          "time, or CNNFAST_CUDA=OFF)")
        return None, f"the CUDA module of cnnfast does not load: {err}"
    return _cuda, ""


def why_unavailable() -> str | None:
    """Why no CUDA device can be used (the build, the driver or the devices), or None when one
    can."""
    module, reason = _module()
    if module is None:
        return reason
    return module.why_unavailable() or None


def device_count() -> int:
    """The CUDA devices cnnfast can use: 0 without the CUDA module, a driver or a device."""
    module, _ = _module()
    return 0 if module is None else int(module.device_count())


def is_available() -> bool:
    """True when a CUDA device can be used."""
    return device_count() > 0


def device_name(index: int = 0) -> str:
    """The name of CUDA device `index`, e.g. "NVIDIA H100 80GB HBM3".

    Raises
    ------
    RuntimeError
        With the reason, when there is no such device.
    """
    if isinstance(index, bool) or not isinstance(index, int):
        raise TypeError(f"cuda.device_name: index must be an int, got {index!r}")
    count = device_count()
    if not 0 <= index < count:
        why = why_unavailable() if count == 0 else f"{count} device(s)"
        raise RuntimeError(f"cuda.device_name: no CUDA device {index} ({why})")
    module, _ = _module()
    return str(module.device_name(index))
