"""Placement: what each replica asks of a node and the environment it starts with."""

import pytest

from teola.runtime.backends.ray_backend import Placement
from teola.runtime.engines.llm import engine_settings


def test_a_placement_asks_for_its_resources_and_numbers_each_replicas_environment(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("UNRELATED_SETTING", "x")
    placement = Placement(replicas=2, num_cpus=1, resources={"teola_llm": 0.5},
                          env_vars={"VLLM_CPU_OMP_THREADS_BIND": "{replica}"})
    assert placement.demand() == {"CPU": 1, "teola_llm": 0.5}
    env = placement.env_for(1)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "1" and env["HF_HUB_OFFLINE"] == "1" and "UNRELATED_SETTING" not in env
    with pytest.raises(ValueError, match="at least one replica"):
        Placement(replicas=0)


def test_llm_engine_settings_fill_in_defaults_and_name_an_unknown_one():
    assert engine_settings(max_model_len=1024) == {"max_model_len": 1024, "kv_cache_gib": 1, "gpu_memory_utilization": 0.5,
                                                   "dtype": None, "check_numerics": "fail"}
    with pytest.raises(TypeError, match="unknown LLM engine setting .*'max_tokens'.*the settings are"):
        engine_settings(max_tokens=5)
