"""Which dtypes the CPU lets vLLM run: refused before an engine starts where its worker would die."""

import pytest

from teola.runtime.engines import cpu_isa
from teola.runtime.errors import EngineUnavailableError

AMX_CPU = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"})


@pytest.fixture
def amx_cpu(monkeypatch):
    monkeypatch.setattr(cpu_isa, "cpu_flags", lambda: AMX_CPU)


def test_bfloat16_with_onednn_capped_below_amx_on_an_amx_cpu_is_refused_with_what_to_do(amx_cpu, monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    with pytest.raises(EngineUnavailableError, match="ONEDNN_MAX_CPU_ISA=AVX2.*SIGILL.*dtype='float32'"):
        cpu_isa.check_dtype("bfloat16")
    assert cpu_isa.check_dtype("float32") == "float32"
    assert cpu_isa.check_dtype("float") == "float32"


@pytest.mark.parametrize("cap", [None, "AVX512_CORE_AMX", "ALL"])
def test_bfloat16_runs_where_onednn_keeps_amx(amx_cpu, monkeypatch, cap):
    if cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert cpu_isa.check_dtype("bfloat16") == "bfloat16"


def test_bfloat16_on_a_cpu_without_amx_is_left_to_vllm(monkeypatch):
    monkeypatch.setattr(cpu_isa, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16"}))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert cpu_isa.check_dtype("bfloat16") == "bfloat16"


def test_an_unknown_dtype_names_the_ones_there_are():
    with pytest.raises(EngineUnavailableError, match=r"unknown LLM dtype 'fp8'.*'bfloat16', 'float16', 'float32'"):
        cpu_isa.check_dtype("fp8")


def test_the_cpu_description_names_the_flags_that_pick_the_numeric_path(amx_cpu, monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    line = cpu_isa.describe_cpu()
    assert "avx512_bf16 amx_tile amx_bf16" in line and "ONEDNN_MAX_CPU_ISA=AVX2" in line


def test_only_a_cpu_with_avx512_or_amx_has_a_path_above_avx2(amx_cpu, monkeypatch):
    assert cpu_isa.has_paths_above_avx2()
    monkeypatch.setattr(cpu_isa, "cpu_flags", lambda: frozenset({"sse4_2", "avx", "avx2", "fma"}))
    assert not cpu_isa.has_paths_above_avx2()
