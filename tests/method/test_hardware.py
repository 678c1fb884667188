"""dualpath.hardware: how a run names its machine."""
from __future__ import annotations

from dualpath.hardware import cpu_has_bf16, cpu_name


def test_the_machine_is_named_with_its_cpu_generation(tmp_path):
    """Two VMs that both say "AMD EPYC" may be different chips: the records carry family and model."""
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n\n"
                    "processor\t: 1\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: other\n")
    assert cpu_name(info) == "AMD EPYC (family 26, model 2)"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\n")
    assert cpu_name(info) == "Some CPU"
    assert cpu_name(tmp_path / "absent")   # no /proc/cpuinfo: the platform's name


def test_bfloat16_hardware_is_read_from_the_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n")
    assert cpu_has_bf16(info)
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 amx_bf16 amx_tile\n")
    assert cpu_has_bf16(info)
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert not cpu_has_bf16(info)
    assert not cpu_has_bf16(tmp_path / "absent")
