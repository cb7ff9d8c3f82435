"""bench/common.py's machine_name: results of different CPUs go to different files (a VM that
reports only "AMD EPYC" ran on Zen 4 and on Zen 5, whose FP32 peaks differ by 2x)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not (ROOT / "bench" / "common.py").exists(),
                                reason="the bench scripts are not in this checkout")


def bench_common():
    """bench/common.py loaded from its file: CI runs the tests against the installed package,
    where the bench folder is not importable."""
    spec = importlib.util.spec_from_file_location("bench_common", ROOT / "bench" / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def block(number: int, name: str, family: int, model: int) -> str:
    return (f"processor\t: {number}\nvendor_id\t: Vendor\ncpu family\t: {family}\n"
            f"model\t\t: {model}\nmodel name\t: {name}\nflags\t\t: fpu avx512f\n\n")


@pytest.mark.parametrize("name,family,model,want", [
    ("AMD EPYC", 25, 17, "amd-epyc-family25-model17"),            # Zen 4 in a VM
    ("AMD EPYC", 26, 2, "amd-epyc-family26-model2"),              # Zen 5 in a VM
    ("AMD EPYC 9654 96-Core Processor", 25, 17, "amd-epyc-9654-96-core"),
    ("Intel(R) Xeon(R) Platinum 8488C", 6, 143, "intel-xeon-platinum-8488c"),
])
def test_machine_name_tells_cpus_apart(tmp_path, name, family, model, want):
    machine_name = bench_common().machine_name
    cpuinfo = tmp_path / "cpuinfo"
    # Only the first processor's block counts: a second one with other values changes nothing.
    cpuinfo.write_text(block(0, name, family, model) + block(1, "Other CPU", 1, 1))
    assert machine_name(str(cpuinfo)) == f"{want}-{os.cpu_count()}c"
