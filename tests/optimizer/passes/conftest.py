"""An advanced-RAG module graph (query expansion, per-query retrieval, fusion, synthesis) and
zero-model engines to run it on, shared by the pass tests."""

import asyncio

import pytest

from teola.optimizer.ir import Graph, ModuleKind, Node, QueryInput, Ref
from teola.optimizer.lowering import lower
from teola.optimizer.values import PromptPrefix, Prompt, Sampling
from teola.runtime.engine_scheduler import BatchingScheduler, CallablePool, EngineScheduler, embed_payload, search_payload
from teola.runtime.engines.base import BatchEngine

GENERATED = 3


def parse_queries(text: str) -> list[str]:
    """One query a non-empty line, at most GENERATED of them."""
    return [line.strip() for line in text.split("\n") if line.strip()][:GENERATED]


def advanced_rag_modules() -> Graph:
    q = QueryInput("query_str")
    g = Graph()
    g.add(Node("expand", ModuleKind.GENERATE, {"query": q}, ("queries",), params={
        "llm_engine": "llm", "sampling": Sampling(), "build_prompt": lambda query: Prompt(text=f"expand:{query}"),
        "parse": parse_queries, "max_items": GENERATED}))
    retrieve = {"embed_engine": "emb", "index_engine": "idx", "top_k": 2, "to_nodes": lambda hits, query: (query, hits)}
    g.add(Node("retrieve", ModuleKind.RETRIEVE, {"query": q}, ("nodes",), params=retrieve, after=("expand",)))
    g.add(Node("retrieve_gen", ModuleKind.RETRIEVE, {"query": Ref("expand", "queries")}, ("nodes",),
               params={**retrieve, "batch": True}, after=("retrieve",)))
    g.add(Node("fuse", ModuleKind.FUSE, {"original": Ref("retrieve", "nodes"), "generated": Ref("retrieve_gen", "nodes")},
               ("nodes",), params={"fn": lambda original, generated: [original, *generated]}, after=("retrieve_gen",)))
    g.add(Node("synthesize", ModuleKind.SYNTHESIZE, {"query": q, "nodes": Ref("fuse", "nodes")}, ("response",), params={
        "llm_engine": "llm", "sampling": Sampling(),
        "build_prompt": lambda query, nodes: Prompt(text=f"answer:{query}|{nodes}"),
        "build_prefix": lambda query: PromptPrefix(Prompt(text=f"answer:{query}|CONTEXT"), "CONTEXT"),
        "prefix_inputs": ("query",), "finish": lambda query, nodes, answer: answer}, after=("fuse",)))
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
        super().__init__("llm")
        self.warmed: list[str] = []
        self.streamed_chars = 0

    def _answer(self, prompt: str) -> str:
        return self.EXPANSION if prompt.startswith("expand:") else f"ANSWER[{prompt}]"

    async def execute(self, node, args, priority=(0, 0)):
        if node.params.get("warm"):
            prefix = args["prompt"]
            self.warmed.append(prefix.prompt.text.split(prefix.cut)[0])
            return self.warmed[-1]
        if "prompt" in args:
            return args["prompt"].text
        return self._answer(args["tokens"])

    async def stream(self, node, args, priority=(0, 0)):
        for char in self._answer(args["tokens"]):
            await asyncio.sleep(0.001)
            self.streamed_chars += 1
            yield char


def new_engines() -> dict[str, EngineScheduler]:
    """Fresh zero-model engines (their queues bind to the event loop that first uses them)."""
    return {"llm": ScriptedLLM(), "emb": BatchingScheduler("emb", EchoEngine("v"), embed_payload),
            "idx": BatchingScheduler("idx", EchoEngine("h"), search_payload), "callable": CallablePool()}


@pytest.fixture
def engines():
    return new_engines()


@pytest.fixture
def engine_factory():
    """``new_engines``, for tests that need fresh engines per run (property-based tests)."""
    return new_engines
