"""JSON a framework parses, from a small model: LlamaIndex LLMs held to a JSON schema by guided decoding."""

from __future__ import annotations

from typing import Any, Sequence

from llama_index.core.llms import LLM
from llama_index.core.question_gen.types import SubQuestionList

from teola_integrations.llama_index.engines import TeolaLLM


def sub_question_schema(tools: Sequence[str], most: int = 3) -> dict[str, Any]:
    """LlamaIndex's own sub-question schema (``SubQuestionList``), its tool names held to ``tools`` and
    its list to 1..``most`` items: what guided decoding holds a small model's sub-questions to."""
    schema = SubQuestionList.model_json_schema()
    schema["$defs"]["SubQuestion"]["properties"]["tool_name"] = {"title": "Tool Name", "type": "string",
                                                                 "enum": list(tools)}
    schema["properties"]["items"].update(minItems=1, maxItems=most)
    return schema


def selection_schema(num_choices: int, most: int = 1, longest_reason: int = 120) -> dict[str, Any]:
    """The JSON LlamaIndex's ``SelectionOutputParser`` reads (a list of ``{"choice": n, "reason": ...}``,
    choices numbered from 1), its choices held to 1..``num_choices``, its list to 1..``most`` items and
    each reason to ``longest_reason`` characters (so the JSON closes within the answer's tokens): what
    guided decoding holds a small model's router selection to."""
    answer = {"type": "object", "additionalProperties": False, "required": ["choice", "reason"],
              "properties": {"choice": {"type": "integer", "minimum": 1, "maximum": num_choices},
                             "reason": {"type": "string", "maxLength": longest_reason}}}
    return {"type": "array", "items": answer, "minItems": 1, "maxItems": most}


def guided_llm(llm: LLM, schema: dict[str, Any], max_tokens: int = 256) -> LLM:
    """A twin of ``llm`` (same model and engine) whose answers are JSON under ``schema``: TeolaLLM's
    ``json_schema``; an OpenAI-like client of a vLLM server sends vLLM's ``structured_outputs``."""
    if isinstance(llm, TeolaLLM):
        return llm.model_copy(update={"json_schema": schema, "max_tokens": max_tokens})
    if not isinstance(getattr(llm, "additional_kwargs", None), dict):
        raise TypeError(f"guided_llm takes a TeolaLLM or an OpenAI/OpenAILike client of a vLLM server, got "
                        f"{type(llm).__name__}: give your question generator such an LLM")
    extra = {**llm.additional_kwargs, "extra_body": {"structured_outputs": {"json": schema}}}
    return llm.model_copy(update={"additional_kwargs": extra, "max_tokens": max_tokens})
