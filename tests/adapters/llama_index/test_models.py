"""Reading the app's own LLM clients and embedding models as engine specs (real objects; nothing is sent)."""

import asyncio

from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.llms.openai_like import OpenAILike

from teola.adapters.llama_index.models import bind_embedding, bind_llm, completion_prompt, llm_why_not
from teola.optimizer.values import ChatMessage, Prompt, Sampling


def _client(**kwargs):
    return OpenAILike(model="m", api_base="http://127.0.0.1:1/v1", api_key="sk-very-secret", **kwargs)


def test_an_openai_like_client_becomes_an_engine_on_its_server_with_its_own_request_parameters():
    llm = _client(temperature=0.0, max_tokens=7, additional_kwargs={"seed": 3, "extra_body": {"top_k": 2}})
    assert llm_why_not(llm) is None
    bound = bind_llm(llm)
    assert bound.engine.name.startswith("llm:http://127.0.0.1:1/v1#m@") and bound.spec.in_process
    assert bound.sampling == Sampling(max_tokens=7, temperature=0.0, extra=(("seed", 3), ("top_k", 2)))
    assert bind_llm(_client()).sampling.max_tokens is None  # none set: the server's own limit, as natively
    assert "sk-very-secret" not in f"{bound!r} {bound.spec.build!r}"
    assert "several choices" in llm_why_not(_client(additional_kwargs={"n": 2}))
    assert "MockLLM is not one Teola serves" in llm_why_not(MockLLM())


def test_complete_sends_a_user_message_to_a_chat_model_and_text_otherwise():
    assert completion_prompt(_client(is_chat_model=True), "hi") == Prompt(messages=(ChatMessage("user", "hi"),))
    wrapped = _client(is_chat_model=False, completion_to_prompt=lambda text: f"<s>{text}")
    assert completion_prompt(wrapped, "hi") == Prompt(text="<s>hi")


def test_any_embedding_model_becomes_an_engine_computing_its_own_query_embeddings():
    embed = MockEmbedding(embed_dim=4)
    bound = bind_embedding(embed)
    assert bound.spec.in_process and bind_embedding(embed).engine == bound.engine  # one engine per model object
    assert asyncio.run(bound.spec.build().run_batch(["q"])) == [embed.get_query_embedding("q")]
