"""cnnfast: fast CPU training of classic convolutional neural networks.

>>> import cnnfast as cf
>>> model = cf.Sequential([cf.layers.Input((28, 28, 1)), cf.layers.Flatten(),
...                        cf.layers.Dense(10, activation="softmax")])
"""

import os as _os

# The CPUs this process may run on, read before the OpenMP runtime loads: with OMP_PROC_BIND set
# it pins the initial thread to one CPU as it starts, after which the process's affinity reads
# as that one CPU (cnnfast.distributed sizes its threads per rank from this).
try:
    _AFFINITY = frozenset(_os.sched_getaffinity(0))
except AttributeError:  # not Linux
    _AFFINITY = frozenset(range(_os.cpu_count() or 1))

from cnnfast import (
    _core,
    backend,
    callbacks,
    cuda,
    data,
    datasets,
    distributed,
    images,
    initializers,
    inside,
    layers,
    losses,
    metrics,
    models,
    ops,
    optimizers,
    regularizers,
    report,
    saving,
    utils,
)
from cnnfast.analyzer import analyze
from cnnfast.backend import get_backend, set_backend
from cnnfast.model import Model, Sequential
from cnnfast.onnx_export import export_onnx
from cnnfast.quantization import QuantizedModel, quantize
from cnnfast.random import set_seed
from cnnfast.saving import load_model
from cnnfast.shapes import conv_output_size, pool_output_size

__version__ = "0.1.0"


def set_num_threads(n: int) -> None:
    """Threads the kernels use (n <= 0 restores the default: OMP_NUM_THREADS or all cores)."""
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    return _core.get_num_threads()


def show_config() -> None:
    """Print the SIMD path of each kernel family, the threads and the build flags of the core."""
    print(f"cnnfast {__version__}")
    print(f"  SIMD path (GEMM):         {_core.sgemm_simd_path()}")
    print(f"  SIMD path (elementwise):  {_core.elementwise_simd_path()}")
    print(f"  SIMD path (pooling):      {_core.pool2d_simd_path()}")
    print(f"  bfloat16 GEMM path:       {_core.sgemm_bf16_path()}")
    print(f"  int8 GEMM path:           {_core.gemm_u8s8_path()}")
    print(f"  conv2d algorithm:         {_core.conv2d_algorithm()}")
    print(f"  threads:                  {_core.get_num_threads()}")
    for var in ("CNNFAST_SIMD", "OMP_NUM_THREADS", "OMP_PROC_BIND"):
        print(f"  {var + ':':<26}{_os.environ.get(var, '(unset)')}")
    print(f"  compiler:                 {_core.compiler}")
    print(f"  build flags:              {_core.build_flags}")


__all__ = [
    "Model", "QuantizedModel", "Sequential", "analyze", "backend", "callbacks", "conv_output_size",
    "cuda", "data", "datasets", "distributed", "export_onnx", "get_backend", "get_num_threads",
    "images", "initializers", "inside", "layers", "load_model", "losses", "metrics", "models",
    "ops", "optimizers", "pool_output_size", "quantize", "regularizers", "report", "saving",
    "set_backend", "set_num_threads", "set_seed", "show_config", "utils",
]

backend._from_environment()
