"""The machine a run trained on, in words for its records.

Two cloud VMs can both call their CPU "AMD EPYC" and be different chips whose math kernels round
differently, so equal runs on them differ in the last digits: the name carries the CPU's family
and model numbers as well.
"""
from __future__ import annotations

import platform
from pathlib import Path


def cpu_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """E.g. ``'AMD EPYC (family 26, model 2)'``; the platform's processor name where there is no
    ``/proc/cpuinfo``."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:
                break   # the first processor's block is enough
            continue
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        return f"{name} (family {fields['cpu family']}, model {fields['model']})"
    return name


def cpu_has_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU multiplies bfloat16 in hardware (AVX-512 BF16 or AMX), where bfloat16 autocast
    (``Config.amp_cpu``) pays; without it oneDNN emulates bfloat16 and is slower than float32."""
    try:
        flags = Path(cpuinfo).read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
