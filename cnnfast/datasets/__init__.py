"""Dataset readers."""

from cnnfast.datasets.idx import parse_idx, read_idx

__all__ = ["parse_idx", "read_idx"]
