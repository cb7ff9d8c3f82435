"""Benchmarks: cnnfast against NumPy and PyTorch, in one run (`python -m bench all`)."""
