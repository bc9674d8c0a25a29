"""Reading the chain's own clients, embeddings and stores as engine specs (real objects; nothing is sent)."""

import asyncio

from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models import FakeListChatModel
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_openai import ChatOpenAI, OpenAI

from teola.adapters.langchain.models import (bind_embeddings, bind_model, bind_store_search, model_why_not,
                                             store_why_not)
from teola.optimizer.ops import EngineKind
from teola.optimizer.values import Sampling


def test_a_chat_openai_client_becomes_an_engine_on_its_server_with_its_own_request_parameters():
    model = ChatOpenAI(model="m", base_url="http://127.0.0.1:1/v1", api_key="sk-very-secret", temperature=0.0,
                       max_tokens=5, model_kwargs={"top_p": 0.5}, default_headers={"X-Team": "a"}, stop=["END"])
    assert model_why_not(model) is None
    bound = bind_model(model)
    assert bound.engine.kind is EngineKind.LLM and bound.spec.in_process
    assert bound.engine.name.startswith("llm:http://127.0.0.1:1/v1#m@")
    assert bound.sampling == Sampling(max_tokens=5, temperature=0.0, stop=("END",), extra=(("top_p", 0.5),))
    assert "sk-very-secret" not in f"{bound!r} {bound.spec.build!r}"


def test_a_completion_client_sends_its_defaults_and_an_unserved_model_says_why_not():
    bound = bind_model(OpenAI(model="m", base_url="http://127.0.0.1:1/v1", api_key="k", temperature=0.0))
    assert bound.sampling.max_tokens == 256 and ("top_p", 1) in bound.sampling.extra  # langchain-openai's defaults
    assert "several choices" in model_why_not(ChatOpenAI(model="m", base_url="http://127.0.0.1:1/v1", api_key="k", n=2))
    assert "FakeListChatModel is not a model Teola serves" in model_why_not(FakeListChatModel(responses=["x"]))


def test_an_in_memory_store_searches_by_vector_as_its_own_similarity_search_does():
    embeddings = DeterministicFakeEmbedding(size=16)
    store = InMemoryVectorStore.from_texts(["alpha beta", "gamma delta", "epsilon"], embeddings)
    assert store_why_not(store) is None
    assert "MyStore is not one Teola searches" in store_why_not(type("MyStore", (InMemoryVectorStore,), {})(embeddings))
    embed, search = bind_embeddings(embeddings), bind_store_search(store)
    assert embed.spec.in_process and search.spec.in_process and embed.engine.kind is EngineKind.EMBEDDING
    [vector] = asyncio.run(embed.spec.build().run_batch(["gamma"]))
    [hits] = asyncio.run(search.spec.build().run_batch([(vector, 2)]))
    assert hits == store.similarity_search("gamma", k=2)
