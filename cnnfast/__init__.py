"""cnnfast: fast CPU training of classic convolutional neural networks."""

from __future__ import annotations

from cnnfast import _core

__version__ = "0.1.0"
__all__ = ["_core"]
