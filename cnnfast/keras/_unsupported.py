"""Known Keras names that cnnfast does not implement: NotImplementedError naming them.

Each compat module defines ``__getattr__ = unsupported(__name__, {...})``; Python calls it only
for names the module lacks, so supported names are untouched and unknown ones still raise
AttributeError (``hasattr`` keeps working for them).
"""

from __future__ import annotations

from collections.abc import Callable


def unsupported(module: str, names: dict[str, str]) -> Callable[[str], object]:
    public = module.replace("cnnfast.keras", "keras")

    def __getattr__(name: str) -> object:
        if name in names:
            hint = names[name]
            raise NotImplementedError(
                f"{public}.{name} is not supported by cnnfast" + (f": {hint}" if hint else "")
            )
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
