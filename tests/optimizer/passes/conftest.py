"""An advanced-RAG module graph (query expansion, per-query retrieval, fusion, synthesis) and
zero-model engines to run it on, shared by the pass tests."""

import asyncio

import pytest

from teola.optimizer.ir import Graph, ModuleKind, Node, QueryInput, Ref
from teola.optimizer.lowering import lower
from teola.optimizer.ops import (CALLABLE, EngineId, EngineKind, FnArgs, GenerateArgs, PrefixSpec, RetrieveArgs,
                                 SynthesizeArgs)
from teola.optimizer.values import PromptPrefix, Prompt, Sampling
from teola.runtime.engine_scheduler import BatchingScheduler, CallablePool, EngineScheduler
from teola.runtime.engines.base import BatchEngine
from teola.runtime.requests import EmbedRequest, GenerateRequest, SearchRequest, TokenizeRequest, WarmPrefixRequest

GENERATED = 3
LLM = EngineId(EngineKind.LLM, "llm")
EMB = EngineId(EngineKind.EMBEDDING, "emb")
IDX = EngineId(EngineKind.VECTOR_INDEX, "idx")


def retrieve_args(batch: bool = False) -> RetrieveArgs:
    """Retrieval on the zero-model engines; its nodes are (query, hits)."""
    return RetrieveArgs(EMB, IDX, 2, lambda hits, query: (query, hits), batch=batch)


def parse_queries(text: str) -> list[str]:
    """One query a non-empty line, at most GENERATED of them."""
    return [line.strip() for line in text.split("\n") if line.strip()][:GENERATED]


def advanced_rag_modules() -> Graph:
    q = QueryInput("query_str")
    g = Graph()
    g.add(Node("expand", ModuleKind.GENERATE, {"query": q}, ("queries",), GenerateArgs(
        LLM, Sampling(), lambda query: Prompt(text=f"expand:{query}"), parse=parse_queries, max_items=GENERATED)))
    g.add(Node("retrieve", ModuleKind.RETRIEVE, {"query": q}, ("nodes",), retrieve_args(), after=("expand",)))
    g.add(Node("retrieve_gen", ModuleKind.RETRIEVE, {"query": Ref("expand", "queries")}, ("nodes",),
               retrieve_args(batch=True), after=("retrieve",)))
    g.add(Node("fuse", ModuleKind.FUSE, {"original": Ref("retrieve", "nodes"), "generated": Ref("retrieve_gen", "nodes")},
               ("nodes",), FnArgs(lambda original, generated: [original, *generated]), after=("retrieve_gen",)))
    g.add(Node("synthesize", ModuleKind.SYNTHESIZE, {"query": q, "nodes": Ref("fuse", "nodes")}, ("response",),
               SynthesizeArgs(LLM, Sampling(), lambda query, nodes: Prompt(text=f"answer:{query}|{nodes}"),
                              PrefixSpec(lambda query: PromptPrefix(Prompt(text=f"answer:{query}|CONTEXT"), "CONTEXT"),
                                         ("query",)),
                              finish=lambda query, nodes, answer: answer), after=("fuse",)))
    g.set_output("response", Ref("synthesize", "response"))
    return g


@pytest.fixture
def primitives() -> Graph:
    return lower(advanced_rag_modules())


class EchoEngine(BatchEngine):
    """Embeds a text as ``v(text)``; searches a vector as ``[h(vector)]``."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag

    async def run_batch(self, requests):
        await asyncio.sleep(0.002)
        return [f"{self.tag}({r if isinstance(r, str) else r[0]})" for r in requests]


class ScriptedLLM(EngineScheduler):
    """Expansion prompts decode to five lines (more than asked), answers to a digest of the prompt.

    Streams one character at a time; records the decode requests it saw and how far each streamed.
    """

    EXPANSION = "alpha\n\nbeta\ngamma\ndelta\nepsilon\n"

    def __init__(self) -> None:
        super().__init__(LLM)
        self.warmed: list[str] = []
        self.streamed_chars = 0

    def _answer(self, prompt: str) -> str:
        return self.EXPANSION if prompt.startswith("expand:") else f"ANSWER[{prompt}]"

    async def execute(self, request):
        if isinstance(request, WarmPrefixRequest):
            self.warmed.append(request.prefix.prompt.text.split(request.prefix.cut)[0])
            return self.warmed[-1]
        if isinstance(request, TokenizeRequest):
            return [prompt.text for prompt in request.prompts]
        assert isinstance(request, GenerateRequest)
        return [self._answer(tokens) for tokens in request.token_ids]

    async def stream(self, request):
        [tokens] = request.token_ids
        for char in self._answer(tokens):
            await asyncio.sleep(0.001)
            self.streamed_chars += 1
            yield char


def new_engines() -> dict[str, EngineScheduler]:
    """Fresh zero-model engines (their queues bind to the event loop that first uses them)."""
    return {"llm": ScriptedLLM(), "emb": BatchingScheduler(EMB, EchoEngine("v"), EmbedRequest),
            "idx": BatchingScheduler(IDX, EchoEngine("h"), SearchRequest), "callable": CallablePool(CALLABLE)}


@pytest.fixture
def engines():
    return new_engines()


@pytest.fixture
def engine_factory():
    """``new_engines``, for tests that need fresh engines per run (property-based tests)."""
    return new_engines
