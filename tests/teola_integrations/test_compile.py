"""The compile path leaves out the passes an app's engines cannot serve (zero-model engines)."""

import logging

from teola.optimizer.ir import Graph, ModuleKind, Node, QueryInput, Ref
from teola.optimizer.ops import EngineId, EngineKind, FnArgs, PrefixSpec, SynthesizeArgs
from teola.optimizer.passes import PASSES
from teola.optimizer.values import Prompt, PromptPrefix, Sampling
from teola.runtime.engine_scheduler import EngineScheduler
from teola.runtime.engines.base import EngineCapabilities
from teola.runtime.runtime import Runtime
from teola_integrations.compile import compile_graph

LLM = EngineId(EngineKind.LLM, "llm:server")


class ServerLLM(EngineScheduler):
    """An LLM engine with the given capabilities (it is never sent anything here)."""

    def __init__(self, capabilities: EngineCapabilities) -> None:
        super().__init__(LLM)
        self._capabilities = capabilities

    @property
    def capabilities(self) -> EngineCapabilities:
        return self._capabilities

    async def execute(self, request):
        raise AssertionError("compiling sends nothing")


def _rag() -> Graph:
    g = Graph()
    g.add(Node("retrieve", ModuleKind.CALL, {"q": QueryInput("query_str")}, ("nodes",), FnArgs(lambda q: [q])))
    g.add(Node("synthesize", ModuleKind.SYNTHESIZE, {"query": QueryInput("query_str"), "nodes": Ref("retrieve", "nodes")},
               ("response",), SynthesizeArgs(
                   LLM, Sampling(), lambda query, nodes: Prompt(text=f"{query}|{nodes}"),
                   PrefixSpec(lambda query: PromptPrefix(Prompt(text=f"{query}|CUT"), "CUT"), ("query",)),
                   finish=lambda query, nodes, answer: answer)))
    g.set_output("response", Ref("synthesize", "response"))
    return g


def _compiled(capabilities: EngineCapabilities):
    runtime = Runtime()
    try:
        runtime.engines[LLM.name] = ServerLLM(capabilities)
        return compile_graph(_rag(), runtime, PASSES)
    finally:
        runtime.close()


def test_an_engine_without_prefix_reuse_gets_no_prefill_splitting_and_says_so(caplog):
    with caplog.at_level(logging.INFO, logger="teola_integrations.compile"):
        compiled = _compiled(EngineCapabilities(prefix_reuse=False, streaming=True))
    assert "split_prefill" not in compiled.passes and "pipeline_decoding" in compiled.passes
    assert not any(n.meta.warm for n in compiled.plan)
    assert [r.message for r in caplog.records] == [
        "teola: split_prefill is left out: the engines ['llm:server'] offer no prefix reuse"]


def test_an_engine_with_prefix_reuse_gets_the_early_prefill():
    compiled = _compiled(EngineCapabilities(prefix_reuse=True, streaming=True))
    assert compiled.passes == PASSES
    assert any(n.meta.warm for n in compiled.plan)
