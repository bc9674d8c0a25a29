"""The suite's apps in both frameworks, on the shared CPU (or GPU) engines, ready for ``run_suite``.

| the paper's app                      | LlamaIndex | LangChain  |
|--------------------------------------|------------|------------|
| search-engine-empowered generation   | search     | search     |
| naive RAG                            | naive      | rag        |
| advanced RAG (expansion, fusion ...) | advanced   | fusion     |
| contextual retrieval                 | -          | contextual |
| more                                 | refine, tree | branches |

LlamaIndex has no component that runs the LLM over each retrieved chunk at query time, so
contextual retrieval has a LangChain form only.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Iterator, Sequence

from teola_integrations.tools.benchmark import SuiteApp
from teola_integrations.tools.data import load_corpus
from teola_integrations.tools.demo_app import APP_KINDS as LLAMA_INDEX_APPS
from teola_integrations.tools.langchain_apps import APPS as LANGCHAIN_APPS, PAPER_APPS as LANGCHAIN_PAPER_APPS
from teola_integrations.tools.search_service import SearchService

APPS = {"llama-index": LLAMA_INDEX_APPS, "langchain": LANGCHAIN_APPS}
DEFAULT_APPS = {"llama-index": ("search", "naive", "advanced"), "langchain": LANGCHAIN_PAPER_APPS}


def llama_index_apps(names: Sequence[str], top_k: int = 3, max_tokens: int = 64, search_url: str | None = None,
                     corpus_limit: int | None = None, server_url: str | None = None) -> list[SuiteApp]:
    """The LlamaIndex apps ``names`` over one index of the demo corpus: on Teola's classes, or with
    ``server_url`` on the user's own (OpenAILike on that server, HuggingFaceEmbedding)."""
    from teola_integrations.tools.demo_app import ask, build_app, build_index, has_hand_tuned_form
    from teola_integrations.tools.user_apps import hf_embedding, openai_like
    from teola_integrations.llama_index import TeolaEmbedding, TeolaLLM, optimize

    embed_model = hf_embedding() if server_url else TeolaEmbedding()
    index = build_index(load_corpus(corpus_limit), embed_model) if set(names) - {"search"} else None
    llm = openai_like(server_url, max_tokens) if server_url else TeolaLLM(max_tokens=max_tokens)
    return [SuiteApp("llama-index", name, build_app(index, llm, name, top_k, search_url),
                     build_app(index, llm, name, top_k, search_url, hand_tuned=True) if has_hand_tuned_form(name) else None,
                     ask, optimize)
            for name in names]


def langchain_apps(names: Sequence[str], top_k: int = 3, max_tokens: int = 64, search_url: str | None = None,
                   corpus_limit: int | None = None, server_url: str | None = None) -> list[SuiteApp]:
    """The LangChain apps ``names`` over one vector store of the demo corpus: on Teola's classes, or
    with ``server_url`` on the user's own (ChatOpenAI on that server, InMemoryVectorStore with
    HuggingFaceEmbeddings)."""
    from teola_integrations.langchain import TeolaChatModel, optimize
    from teola_integrations.tools.langchain_apps import build_app, build_store
    from teola_integrations.tools.user_apps import build_user_store, chat_openai

    if server_url:
        store, model = build_user_store(corpus_limit), chat_openai(server_url, max_tokens)
    else:
        store, model = build_store(corpus_limit), TeolaChatModel(max_tokens=max_tokens)
    apps = []
    for name in names:
        app = build_app(name, store, model, top_k, search_url)
        apps.append(SuiteApp("langchain", name, app.native, None if app.hand_tuned is app.native else app.hand_tuned,
                             lambda chain, question: chain.invoke({"question": question}), optimize, app.reference))
    return apps


@contextmanager
def suite_apps(chosen: dict[str, Sequence[str]], top_k: int = 3, max_tokens: int = 64, search_latency_s: float = 0.3,
               search_jitter_s: float = 0.05, server_url: str | None = None) -> Iterator[list[SuiteApp]]:
    """The apps ``chosen`` (framework -> app names), with the loopback search service running for as
    long as the block runs where a search app is among them; with ``server_url``, built on the
    user's own classes against that OpenAI-compatible server."""
    builders = {"llama-index": llama_index_apps, "langchain": langchain_apps}
    with ExitStack() as stack:
        url = (stack.enter_context(SearchService(load_corpus(), search_latency_s, search_jitter_s)).url
               if any("search" in names for names in chosen.values()) else None)
        yield [app for framework, names in chosen.items() if names
               for app in builders[framework](names, top_k, max_tokens, url, server_url=server_url)]
