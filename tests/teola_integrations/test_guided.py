"""LlamaIndex LLMs held to a JSON schema: the schema, and what each kind of LLM twin sends (no engine)."""

import json

import pytest
from llama_index.core.llms import MockLLM
from llama_index.core.question_gen.types import SubQuestionList
from llama_index.llms.openai_like import OpenAILike

from teola.adapters.llama_index import compat as li
from teola.runtime.engines.openai_server import request_sampling
from teola_integrations.llama_index import guided_llm, sub_question_schema


def test_the_sub_question_schema_is_llama_indexs_own_held_to_the_tools():
    schema = sub_question_schema(["docs", "api"], most=2)
    item = schema["$defs"]["SubQuestion"]
    assert item["properties"]["tool_name"]["enum"] == ["docs", "api"] and item["required"] == ["sub_question", "tool_name"]
    assert schema["properties"]["items"]["maxItems"] == 2
    parsed = SubQuestionList.model_validate({"items": [{"sub_question": "What is pass?", "tool_name": "docs"}]})
    assert parsed.items[0].tool_name == "docs"


def test_an_openai_like_twin_sends_vllms_structured_outputs_and_teola_reads_it_as_the_schema():
    llm = OpenAILike(model="m", api_base="http://127.0.0.1:9/v1", api_key="k", max_tokens=32,
                     additional_kwargs={"top_p": 0.5})
    schema = sub_question_schema(["docs"])
    twin = guided_llm(llm, schema)
    assert llm.additional_kwargs == {"top_p": 0.5}  # the user's own LLM is left as it was
    sampling = request_sampling(li.request_params(twin))
    assert json.loads(sampling.json_schema) == schema and dict(sampling.extra) == {"top_p": 0.5}
    assert sampling.max_tokens == 256
    hash(sampling)  # plain data: engines may key on it


def test_an_llm_that_cannot_be_guided_is_refused_saying_which_can():
    with pytest.raises(TypeError, match="takes a TeolaLLM or an OpenAI/OpenAILike client.*got MockLLM"):
        guided_llm(MockLLM(), sub_question_schema(["docs"]))
