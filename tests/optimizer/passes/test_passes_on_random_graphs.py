"""Property-based: on random module graphs, every pass (and all of them) keeps the graph's results.

The graphs mix what the passes act on: framework order edges (prune), batched embed -> search chains
(decompose), prompts with an early-known prefix (split_prefill), LLM list outputs read item by item
(pipeline_decoding), and opaque calls joining branches. They run on the zero-model engines of
``conftest.py``: the expansion prompt decodes to five lines, more than any list asks for.
"""

import asyncio
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from teola.optimizer.cost_model import LinearCost
from teola.optimizer.ir import Graph, ModuleKind, Node, QueryInput, Ref
from teola.optimizer.lowering import lower
from teola.optimizer.ops import EngineId, EngineKind, FnArgs, GenerateArgs, PrefixSpec, RetrieveArgs
from teola.optimizer.passes import PASSES, optimize_plan
from teola.optimizer.values import Prompt, PromptPrefix, Sampling
from teola.runtime.graph_scheduler import GraphScheduler

QUERY = QueryInput("query_str")
LLM = EngineId(EngineKind.LLM, "llm")  # the engines of conftest.py
RETRIEVE = RetrieveArgs(EngineId(EngineKind.EMBEDDING, "emb"), EngineId(EngineKind.VECTOR_INDEX, "idx"), 2,
                        lambda hits, query: (query, hits))
COSTS = {"emb": LinearCost(0.001, 0.05), "idx": LinearCost(0.001, 0.05)}


def _lines(limit: int):
    def parse(text: str) -> list[str]:
        return [line.strip() for line in text.split("\n") if line.strip()][:limit]
    return parse


def _join(**values) -> str:
    return "|".join(f"{k}={values[k]!r}" for k in sorted(values))


@st.composite
def module_graphs(draw) -> Graph:
    """A random module graph: each module reads the query or earlier outputs; the output joins every leaf."""
    g = Graph()
    texts: list[Ref | QueryInput] = [QUERY]  # outputs that are text (or anything a prompt can print)
    lists: list[tuple[Ref, int]] = []  # bounded list outputs of LLM calls, with their bound
    names: list[str] = []
    for i in range(draw(st.integers(2, 7))):
        kind = draw(st.sampled_from(["retrieve", "expand", "retrieve_each", "generate", "call"]))
        after = (draw(st.sampled_from(names)),) if names and draw(st.booleans()) else ()
        name = f"m{i}"
        if kind == "expand":
            limit = draw(st.integers(1, 4))
            source = draw(st.sampled_from(texts))
            g.add(Node(name, ModuleKind.GENERATE, {"x": source}, ("items",), GenerateArgs(
                LLM, Sampling(), lambda x: Prompt(text=f"expand:{x}"), parse=_lines(limit), max_items=limit), after=after))
            lists.append((Ref(name, "items"), limit))
        elif kind == "retrieve_each" and lists:
            source, _ = draw(st.sampled_from(lists))
            g.add(Node(name, ModuleKind.RETRIEVE, {"query": source}, ("nodes",), replace(RETRIEVE, batch=True),
                       after=after))
            texts.append(Ref(name, "nodes"))
        elif kind == "retrieve" or kind == "retrieve_each":
            g.add(Node(name, ModuleKind.RETRIEVE, {"query": draw(st.sampled_from(texts))}, ("nodes",), RETRIEVE,
                       after=after))
            texts.append(Ref(name, "nodes"))
        elif kind == "generate":
            late = draw(st.sampled_from(texts))
            prefix = None
            if draw(st.booleans()):  # the question-first part is known before ``late``
                prefix = PrefixSpec(lambda q: PromptPrefix(Prompt(text=f"gen:{q}|LATE"), "LATE"), ("q",))
            g.add(Node(name, ModuleKind.GENERATE, {"q": QUERY, "late": late}, ("text",),
                       GenerateArgs(LLM, Sampling(), lambda q, late: Prompt(text=f"gen:{q}|{late}"), prefix), after=after))
            texts.append(Ref(name, "text"))
        else:
            sources = draw(st.lists(st.sampled_from(texts + [ref for ref, _ in lists]), min_size=1, max_size=3))
            g.add(Node(name, ModuleKind.CALL, {f"a{k}": s for k, s in enumerate(sources)}, ("out",),
                       FnArgs(_join, pure=draw(st.booleans())), after=after))
            texts.append(Ref(name, "out"))
        names.append(name)
    read = {s.node for n in g for s in n.inputs.values() if isinstance(s, Ref)}
    leaves = [n.name for n in g if n.name not in read]
    g.add(Node("answer", ModuleKind.CALL, {leaf: Ref(leaf, g[leaf].outputs[0]) for leaf in leaves}, ("out",),
               FnArgs(_join, pure=True)))
    g.set_output("answer", Ref("answer", "out"))
    return g


def _results(plans, engine_factory):
    async def main():
        engines = engine_factory()
        return [(await GraphScheduler(plan, engines).run({"query_str": "what is a with statement"}))[0] for plan in plans]

    return asyncio.run(main())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(modules=module_graphs())
def test_each_pass_and_all_passes_keep_the_results_of_a_random_graph(modules, engine_factory):
    primitives = lower(modules)
    plans = [primitives, *(optimize_plan(primitives, (name,), COSTS) for name in PASSES),
             optimize_plan(primitives, PASSES, COSTS)]
    expected, *optimized = _results(plans, engine_factory)
    assert all(outputs == expected for outputs in optimized)
