"""``keras.backend``, the little that CNN scripts ask of it: the image data format."""

from __future__ import annotations


def image_data_format() -> str:
    """Always "channels_last": cnnfast stores images as (N, H, W, C)."""
    return "channels_last"


def set_image_data_format(data_format: str) -> None:
    if data_format != "channels_last":
        raise NotImplementedError(
            f"keras.backend.set_image_data_format({data_format!r}) is not supported by cnnfast: "
            f"only channels_last"
        )


def floatx() -> str:
    return "float32"


def epsilon() -> float:
    return 1e-7


def clear_session() -> None:
    """Nothing to clear: cnnfast keeps no global graph."""


__all__ = ["clear_session", "epsilon", "floatx", "image_data_format", "set_image_data_format"]
