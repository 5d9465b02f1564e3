"""What the machine offers: CPU model and flags, native bf16, thread count, torch/oneDNN versions.

One home for these facts: the pipeline asks ``native_bf16`` to pick its default precision and
every results file records ``describe()`` so a reader can tell which machine a number is from.
"""
from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import torch

# the flags that decide CPU inference speed (x86 names as in /proc/cpuinfo)
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
               "amx_tile", "amx_bf16", "amx_int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # bf16 dot products in hardware (oneDNN uses them)


@functools.lru_cache(maxsize=None)
def _cpuinfo() -> tuple[str | None, frozenset[str]]:
    model, flags = None, frozenset()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, val = line.partition(":")
                key = key.strip()
                if key == "model name" and model is None:
                    model = val.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = frozenset(val.split())
    except OSError:  # not Linux: no flags known, so no bf16 by default
        pass
    return model, flags


def cpu_model() -> str | None:
    return _cpuinfo()[0]


def cpu_flags() -> frozenset[str]:
    return _cpuinfo()[1]


def native_bf16() -> bool:
    """True when the CPU computes bf16 dot products natively (AVX512-BF16 or AMX-BF16).
    Elsewhere bf16 is emulated and slower than float32."""
    return any(f in cpu_flags() for f in BF16_FLAGS)


def default_dtype(device: torch.device) -> torch.dtype:
    """The precision ``dtype="auto"`` runs in: bf16 autocast on a CPU with native bf16, float32
    otherwise (never float16 on CPU: no CPU computes it fast, and its range clips activations)."""
    return torch.bfloat16 if device.type == "cpu" and native_bf16() else torch.float32


def onednn_version() -> str | None:
    m = re.search(r"MKL-DNN v([\w.]+)", torch.__config__.show())
    return m.group(1) if m else None


def describe() -> dict:
    """Machine facts for a results file."""
    info = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "speed_flags": [f for f in SPEED_FLAGS if f in cpu_flags()], "native_bf16": native_bf16(),
            "torch": torch.__version__, "onednn": onednn_version(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}
    try:
        info["load_avg_1min"] = os.getloadavg()[0]
    except OSError:
        pass
    info["huge_pages"] = huge_pages()
    return info


def huge_pages() -> str:
    """How large CPU buffers get transparent huge pages: the kernel's policy (always / madvise /
    never) and whether torch asks for them (THP_MEM_ALLOC_ENABLE, set by ``import upstep``)."""
    try:
        policy = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().split("[")[1].split("]")[0]
    except (OSError, IndexError):
        return "unknown"
    asked = os.environ.get("THP_MEM_ALLOC_ENABLE", "0") not in ("", "0")
    return f"kernel {policy}, torch {'asks' if asked else 'does not ask'}"


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's ceiling on 64-bit (HEAP_MAX_SIZE / 2)


@functools.lru_cache(maxsize=None)
def reuse_freed_memory(trim_threshold: int = 2**30) -> bool:
    """Ask glibc's malloc to keep freed buffers of up to 32 MB for reuse instead of returning them
    to the kernel. CPU inference and training allocate and free the same buffers on every call
    (torch and ONNX Runtime both allocate through malloc); with glibc's defaults many of them are
    fresh pages each time, and the kernel's page faults and zero-filling show up in every call's time.
    Process-wide, at most ``trim_threshold`` bytes of free memory kept; a no-op (False) where the
    C library is not glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))


def trim_freed_memory() -> bool:
    """Hand the free memory glibc's malloc keeps (``reuse_freed_memory``, and every thread's arena)
    back to the kernel now: ``malloc_trim(0)``. For a long-running process between units of work
    (``upstep serve`` after each job), so that its resident memory follows what it holds rather than
    the most it ever held; False where the C library is not glibc."""
    import ctypes
    import ctypes.util

    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(trim(0))
