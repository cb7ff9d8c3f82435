"""Which backend runs models: ``cf.set_backend("cpu" | "cuda")``, or the environment variable
``CNNFAST_BACKEND`` read when cnnfast is imported.

The CPU backend (the C++ core) is the default and always present. Asking for CUDA where no
device can be used raises a RuntimeError that gives the reason (:func:`cnnfast.cuda.
why_unavailable`). This version has the CUDA module's device queries but not yet the plan that
trains on the device, so asking for CUDA where a device exists raises too, saying so: a model
never silently runs on another backend than the one asked for.
"""

from __future__ import annotations

import os

from cnnfast import cuda

__all__ = ["get_backend", "set_backend"]

_BACKENDS = ("cpu", "cuda")
_current = "cpu"


def get_backend() -> str:
    """The backend that runs models: "cpu" or "cuda"."""
    return _current


def set_backend(name: str) -> None:
    """Choose the backend that runs models.

    Parameters
    ----------
    name : {"cpu", "cuda"}

    Raises
    ------
    ValueError
        For another name.
    RuntimeError
        For "cuda" when no CUDA device can be used (with the reason), or when this version
        cannot train on one.
    """
    global _current
    if not isinstance(name, str) or name.lower() not in _BACKENDS:
        raise ValueError(f"set_backend: backend must be one of {list(_BACKENDS)}, got {name!r}")
    name = name.lower()
    if name == "cuda":
        why = cuda.why_unavailable()
        if why is not None:
            raise RuntimeError(f"set_backend('cuda'): no CUDA device can be used: {why}")
        raise RuntimeError(f"set_backend('cuda'): {cuda.device_name(0)} is usable, but this "
                           "version of cnnfast does not yet run models on CUDA devices; the "
                           "CPU backend stays in use")
    _current = name


def _from_environment() -> None:
    """Apply CNNFAST_BACKEND (called once, when cnnfast is imported)."""
    value = os.environ.get("CNNFAST_BACKEND", "").strip()
    if not value:
        return
    try:
        set_backend(value)
    except ValueError:
        raise ValueError(f"CNNFAST_BACKEND must be one of {list(_BACKENDS)}, got {value!r}") \
            from None
    except RuntimeError as err:
        raise RuntimeError(f"CNNFAST_BACKEND={value}: {err}") from None
