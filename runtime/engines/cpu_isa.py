"""Which numeric paths this CPU gives vLLM-CPU: its instruction-set flags and oneDNN's ISA cap.

vLLM-CPU picks its kernels from the CPU's flags (``amx_bf16`` and ``avx512_bf16`` select its
AMX/AVX512-BF16 build), while oneDNN, which runs most of its matrix products, can be capped below
them with ``ONEDNN_MAX_CPU_ISA``. The two disagree when the cap leaves AMX out on a CPU that has
it: vLLM's own AMX kernels then run without the AMX permission oneDNN would have asked the kernel
for, and its worker dies of SIGILL. ``check_dtype`` refuses that before an engine starts.
"""

from __future__ import annotations

import os
from functools import lru_cache

from teola.runtime.errors import EngineUnavailableError

# vLLM's own names for the dtypes it can start with, and what each means.
DTYPES = {"auto": "auto", "float32": "float32", "float": "float32", "bfloat16": "bfloat16",
          "float16": "float16", "half": "float16"}
_SHOWN_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16")


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = "unknown CPU", frozenset()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown CPU":
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = frozenset(value.split())
    except OSError:  # not Linux: nothing to say about the flags
        pass
    return model, flags


def cpu_model() -> str:
    """The CPU's model name, as ``lscpu`` shows it."""
    return _cpuinfo()[0]


def cpu_flags() -> frozenset[str]:
    """The CPU's instruction-set flags (``/proc/cpuinfo``; empty where there is none)."""
    return _cpuinfo()[1]


def onednn_isa_cap() -> str | None:
    """The ISA oneDNN is capped at (``ONEDNN_MAX_CPU_ISA``), or None when it may use all the CPU has."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    return None if cap in ("", "ALL", "DEFAULT") else cap


def has_paths_above_avx2() -> bool:
    """Whether the CPU has AVX512 or AMX, so that capping oneDNN and torch at AVX2 takes another
    numeric path than the CPU's own (on an AVX2-only CPU it is the same path)."""
    return any(flag.startswith(("avx512", "amx")) for flag in cpu_flags())


def describe_cpu() -> str:
    """One line naming the CPU, the flags that decide vLLM-CPU's numeric paths, and oneDNN's cap."""
    shown = [flag for flag in _SHOWN_FLAGS if flag in cpu_flags()]
    return f"{cpu_model()} ({' '.join(shown) or 'no AVX2/AVX512/AMX flags'}; ONEDNN_MAX_CPU_ISA={onednn_isa_cap() or 'unset'})"


def check_dtype(dtype: str) -> str:
    """The vLLM dtype ``dtype`` names, or an ``EngineUnavailableError`` saying why it cannot run here."""
    if dtype not in DTYPES:
        raise EngineUnavailableError(f"unknown LLM dtype {dtype!r}: use one of {sorted(set(DTYPES.values()))}")
    resolved = DTYPES[dtype]
    cap = onednn_isa_cap()
    if resolved == "bfloat16" and "amx_bf16" in cpu_flags() and cap is not None and "AMX" not in cap:
        raise EngineUnavailableError(
            f"dtype bfloat16 cannot run on this CPU with ONEDNN_MAX_CPU_ISA={cap}: vLLM-CPU still runs its own AMX "
            "kernels for bfloat16, which then die of SIGILL; unset ONEDNN_MAX_CPU_ISA or use dtype='float32'")
    return resolved
