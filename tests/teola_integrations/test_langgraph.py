"""Real LangGraph graphs, natively and optimized by Teola: same final state, streamed chunks, run trees,
checkpoints and exceptions; pure nodes start early (counted), nodes with side effects never do."""

from __future__ import annotations

import asyncio
import operator
import time
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send

from teola_integrations.langgraph import EARLY, optimize, pure, teola_langgraph
from teola_integrations.tools.run_trees import langchain_run_tree

SLOW_S = 0.4  # the slow branch: long enough that the fast chain finishes while it runs


class State(TypedDict, total=False):
    question: str
    slow: str
    trail: Annotated[list, operator.add]
    answer: str


def slow(state: State) -> dict:
    time.sleep(SLOW_S)
    return {"slow": state["question"].upper()}


def fast(i: int, reads_slow: bool = False):
    """A pure node of the fast chain; with ``reads_slow`` it reads what the slow branch writes."""

    @pure
    def node(state: State) -> dict:
        get_stream_writer()({"fast": i})
        seen = state.get("slow", "-") if reads_slow else ""
        return {"trail": [f"f{i}:{len(state.get('trail', []))}{seen}"]}

    return node


def join(state: State) -> dict:
    return {"answer": f"{state['slow']}|{','.join(state['trail'])}"}


def barrier_graph(reads_slow: bool = False, middle: Any = None):
    """The pattern users report: a slow branch beside a chain of fast nodes, joined at the end."""
    return _barrier_of({"slow": slow, "f1": fast(1), "f2": middle or fast(2, reads_slow), "f3": fast(3), "join": join})


def _barrier_of(nodes: dict[str, Any]):
    """The barrier's shape over ``nodes`` (slow, f1, f2, f3, join): START -> slow, START -> f1 -> f2 -> f3,
    both into join."""
    builder = StateGraph(State)
    for name, node in nodes.items():
        builder.add_node(name, node)
    builder.add_edge(START, "slow")
    builder.add_edge(START, "f1")
    builder.add_edge("f1", "f2")
    builder.add_edge("f2", "f3")
    builder.add_edge(["slow", "f3"], "join")
    builder.add_edge("join", END)
    return builder.compile()


MODES = ["updates", "values", "custom", "debug"]


def _comparable(chunks: list) -> list:
    """Stream chunks without what differs between any two runs (debug timestamps, task and checkpoint ids)."""
    out = []
    for mode, chunk in chunks:
        if mode == "debug":
            chunk = {"type": chunk["type"], "step": chunk["step"], "name": chunk["payload"].get("name"),
                     "result": chunk["payload"].get("result"), "values": chunk["payload"].get("values")}
        out.append((mode, chunk))
    return out


def test_optimize_returns_a_compiled_graph_of_the_same_class_and_leaves_the_original_alone():
    graph = barrier_graph()
    fast_graph = optimize(graph)
    assert type(fast_graph) is type(graph)
    assert fast_graph.get_graph().to_json() == graph.get_graph().to_json()
    before = EARLY["started"]
    graph.invoke({"question": "q"})
    assert EARLY["started"] == before, "the original graph started nodes early"
    with pytest.raises(TypeError, match="compiled LangGraph graph"):
        optimize(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no node named"):
        optimize(graph, pure=["nope"])


def test_the_fast_chain_runs_beside_the_slow_branch_with_langgraphs_state_and_streams():
    graph = barrier_graph()
    fast_graph = optimize(graph)
    native = graph.invoke({"question": "why"})
    adopted = EARLY["adopted"]
    assert fast_graph.invoke({"question": "why"}) == native
    # f2 and f3 ran beside the slow branch; f1 did not start early: its step begins as soon as
    # __start__, the one task before it, ends
    assert EARLY["adopted"] - adopted == 2, "f2 and f3 were not both adopted from early runs"
    assert native["answer"] == "WHY|f1:0,f2:1,f3:2"
    assert _comparable(list(fast_graph.stream({"question": "why"}, stream_mode=MODES))) == _comparable(
        list(graph.stream({"question": "why"}, stream_mode=MODES))
    )
    inputs = [{"question": "a"}, {"question": "b"}, {"question": "c"}]
    assert fast_graph.batch(inputs) == graph.batch(inputs)


def test_async_runs_stream_and_batch_as_langgraph_does():
    graph = barrier_graph()
    fast_graph = optimize(graph)

    async def both(g):
        state = await g.ainvoke({"question": "why"})
        chunks = [c async for c in g.astream({"question": "why"}, stream_mode=MODES)]
        batch = await g.abatch([{"question": "a"}, {"question": "b"}])
        return state, _comparable(chunks), batch

    adopted = EARLY["adopted"]
    assert asyncio.run(both(fast_graph)) == asyncio.run(both(graph))
    assert EARLY["adopted"] > adopted


def test_a_node_that_read_what_a_sibling_then_wrote_runs_again_in_its_step():
    graph = barrier_graph(reads_slow=True)
    rerun = EARLY["rerun"]
    native = graph.invoke({"question": "why"})
    assert optimize(graph).invoke({"question": "why"}) == native
    assert "f2:1WHY" in native["answer"]
    assert EARLY["rerun"] > rerun


def test_a_node_with_side_effects_runs_once_and_only_in_its_step():
    events: list[str] = []

    def audit(state: State) -> dict:  # not marked pure: it has a side effect
        events.append("audit" if "slow" in state else "audit before slow")
        return {"trail": ["audited"]}

    graph = barrier_graph(middle=audit)
    native = graph.invoke({"question": "why"})
    assert events == ["audit"]
    events.clear()
    fast_graph = optimize(graph)
    assert fast_graph.invoke({"question": "why"}) == native
    assert events == ["audit"]
    events.clear()
    assert optimize(barrier_graph(), side_effects=["f2"]).invoke({"question": "q"})["answer"].startswith("Q|")


def test_the_run_tree_is_langgraphs():
    def tree(g) -> list:
        collector = RunCollectorCallbackHandler()
        g.invoke({"question": "why"}, {"callbacks": [collector], "tags": ["user"]})
        (root,) = collector.traced_runs
        return langchain_run_tree(root) + _node_metadata(root)

    graph = barrier_graph()
    assert tree(optimize(graph)) == tree(graph)


def _node_metadata(run: Any) -> list:
    rows = [(run.name, (run.extra or {}).get("metadata", {}).get("langgraph_step"),
             (run.extra or {}).get("metadata", {}).get("langgraph_node"))]
    for child in sorted(run.child_runs, key=lambda c: c.name):
        rows += _node_metadata(child)
    return rows


def test_conditional_edges_sends_and_commands_give_langgraphs_state():
    class Fan(TypedDict, total=False):
        topics: list[str]
        jokes: Annotated[list, operator.add]
        route: str
        done: str

    @pure
    def plan(state: Fan) -> dict:
        return {"topics": ["cats", "dogs", "owls"], "route": "fan"}

    @pure
    def joke(arg: dict) -> dict:
        return {"jokes": [f"joke about {arg['topic']}"]}

    @pure
    def decide(state: Fan) -> Command:
        return Command(update={"done": f"{len(state['jokes'])} jokes"}, goto=END)

    builder = StateGraph(Fan)
    builder.add_node("plan", plan)
    builder.add_node("joke", joke)
    builder.add_node("slow_side", lambda s: time.sleep(SLOW_S) or {"jokes": ["slow joke"]})
    builder.add_node("decide", decide)
    builder.add_edge(START, "plan")
    builder.add_edge(START, "slow_side")
    builder.add_conditional_edges("plan", lambda s: [Send("joke", {"topic": t}) for t in s["topics"]])
    builder.add_edge("joke", "decide")
    graph = builder.compile()
    native = graph.invoke({})
    assert optimize(graph).invoke({}) == native
    assert native["done"] == "4 jokes"


def test_checkpoints_interrupts_resume_and_time_travel_are_langgraphs():
    def history(g) -> list:
        config = {"configurable": {"thread_id": "t"}}
        first = g.invoke({"question": "why"}, config)
        resumed = g.invoke(None, config)
        states = list(g.get_state_history(config))
        before_slow = next(s for s in states if s.next == ("slow", "f1"))  # time travel: rerun from there
        replayed = g.invoke(None, before_slow.config)
        return [first, resumed, [(s.values, s.next) for s in states], replayed]

    def compiled():
        builder = barrier_graph().builder
        return builder.compile(checkpointer=InMemorySaver(), interrupt_before=["join"])

    native = history(compiled())
    assert history(optimize(compiled())) == native
    assert native[0].get("answer") is None and native[1]["answer"] == "WHY|f1:0,f2:1,f3:2"
    assert native[3].get("answer") is None and native[3]["trail"] == ["f1:0", "f2:1", "f3:2"]


def test_a_failing_node_raises_what_it_raises_natively():
    @pure
    def broken(state: State) -> dict:
        raise ValueError(f"bad trail {state.get('trail')}")

    graph = barrier_graph(middle=broken)
    with pytest.raises(ValueError) as native:
        graph.invoke({"question": "why"})
    with pytest.raises(ValueError) as teola:
        optimize(graph).invoke({"question": "why"})
    assert str(teola.value) == str(native.value)


def test_the_switch_optimizes_every_graph_in_a_with_block():
    graph = barrier_graph()
    native = graph.invoke({"question": "q"})
    started = EARLY["started"]
    with teola_langgraph():
        assert graph.invoke({"question": "q"}) == native
    assert EARLY["started"] > started
    started = EARLY["started"]
    graph.invoke({"question": "q"})
    assert EARLY["started"] == started


def _asking_graph(client: Any) -> Any:
    """The barrier graph whose every node first asks the LLM behind ``client`` a prompt naming the node."""
    from teola.optimizer.values import ChatMessage, Prompt, Sampling

    def asking(name: str, is_pure: bool):
        def node(state: State) -> dict:
            client.text(Prompt(messages=(ChatMessage("user", name),)), Sampling(max_tokens=4))
            if name == "slow":
                time.sleep(SLOW_S)
            return {"trail": [name]}

        return pure(node) if is_pure else node

    return _barrier_of({name: asking(name, name.startswith("f")) for name in ("slow", "f1", "f2", "f3", "join")})


# How many nodes follow each node of the asking graph to its end: minus that is its work's priority.
ASKING_DEPTHS = {"f1": 4, "f2": 3, "slow": 2, "f3": 2, "join": 1}


def test_each_nodes_engine_work_is_sent_at_its_depth_in_the_graph(recording_engine):
    from teola.runtime.clients import LLMClient
    from teola.runtime.runtime import get_runtime

    graph = _asking_graph(LLMClient(get_runtime(), recording_engine))
    expected = sorted((name, (-depth, 0)) for name, depth in ASKING_DEPTHS.items())
    native = graph.invoke({"question": "q"})
    assert sorted(recording_engine.asked) == sorted((name, (0, 0)) for name in ASKING_DEPTHS)

    for run in (lambda g: g.invoke({"question": "q"}), lambda g: asyncio.run(g.ainvoke({"question": "q"}))):
        recording_engine.asked.clear()
        adopted = EARLY["adopted"]
        assert run(optimize(graph)) == native
        assert EARLY["adopted"] - adopted == 2  # f2 and f3 sent theirs from early runs
        assert sorted(recording_engine.asked) == expected
    recording_engine.asked.clear()
    with teola_langgraph():
        assert graph.invoke({"question": "q"}) == native
    assert sorted(recording_engine.asked) == expected
    recording_engine.asked.clear()
    optimize(graph, critical_path=False).invoke({"question": "q"})
    assert sorted(recording_engine.asked) == sorted((name, (0, 0)) for name in ASKING_DEPTHS)


def test_a_subgraphs_nodes_send_their_work_below_their_parent_nodes_priority(recording_engine):
    from teola.runtime.clients import LLMClient
    from teola.runtime.runtime import get_runtime

    builder = StateGraph(State)
    builder.add_node("inner", _asking_graph(LLMClient(get_runtime(), recording_engine)))
    builder.add_node("after", lambda state: {"answer": "done"})
    builder.add_edge(START, "inner")
    builder.add_edge("inner", "after")
    builder.add_edge("after", END)
    outer = builder.compile()
    native = outer.invoke({"question": "q"})
    recording_engine.asked.clear()
    with teola_langgraph():
        assert outer.invoke({"question": "q"}) == native
    inner_depth = 2  # inner -> after -> end
    assert sorted(recording_engine.asked) == sorted((name, (-inner_depth - d, 0)) for name, d in ASKING_DEPTHS.items())


def _messages(chunks: Any) -> tuple[dict, list]:
    """``messages`` stream chunks as each node's token contents, and the steps in stream order.

    Natively, nodes of one step stream concurrently (their tokens interleave as timing has it), and a
    step's tokens all come before the next step's: both are compared."""
    per_node: dict = {}
    steps = []
    for message, metadata in chunks:
        key = (metadata["langgraph_node"], metadata["langgraph_step"])
        per_node.setdefault(key, []).append((type(message).__name__, message.content))
        steps.append(metadata["langgraph_step"])
    return per_node, steps


@pytest.mark.answers
def test_llm_nodes_give_langgraphs_state_messages_stream_and_run_tree(chat):
    from teola_integrations.langchain import TeolaChatModel
    from teola_integrations.tools.langgraph_bench import llm_barrier_graph

    graph = llm_barrier_graph(chat, TeolaChatModel(max_tokens=8))
    fast_graph = optimize(graph)
    question = {"question": "What does the pass statement do?"}
    graph.invoke(question)  # warm the engine's prefix cache for both (see compare.interleave)
    adopted = EARLY["adopted"]
    native = graph.invoke(question)
    assert fast_graph.invoke(question) == native
    assert EARLY["adopted"] > adopted
    native_messages, native_steps = _messages(graph.stream(question, stream_mode="messages"))
    assert len(native_messages) == 4 and all(len(tokens) > 2 for tokens in native_messages.values())
    messages, steps = _messages(fast_graph.stream(question, stream_mode="messages"))
    assert messages == native_messages
    assert steps == sorted(steps) and native_steps == sorted(native_steps)

    def tree(g) -> list:
        collector = RunCollectorCallbackHandler()
        g.invoke(question, {"callbacks": [collector]})
        (root,) = collector.traced_runs
        return langchain_run_tree(root) + _node_metadata(root)

    assert tree(fast_graph) == tree(graph)


@pytest.mark.answers
def test_chain_nodes_under_the_executor_run_as_plans_at_their_nodes_depth_and_stream_messages_natively(chat,
                                                                                                       monkeypatch):
    from teola_integrations.langchain import TeolaChatModel, teola_executor
    from teola_integrations.langchain.executor import ROUTED
    from teola_integrations.tools.langgraph_bench import llm_barrier_graph

    fast_model = TeolaChatModel(max_tokens=8)
    graph = llm_barrier_graph(chat, fast_model)
    question = {"question": "What does the pass statement do?"}
    graph.invoke(question)  # warm the engine's prefix cache
    native = graph.invoke(question)
    native_messages, _ = _messages(graph.stream(question, stream_mode="messages"))
    engine, priorities = chat._client.engine, []
    assert fast_model._client.engine is engine  # one shared engine: the graph's nodes batch on it

    def recorded(method):
        def call(request, *args, **kwargs):
            priorities.append(request.priority[0])
            return method(request, *args, **kwargs)

        return call

    monkeypatch.setattr(engine, "execute", recorded(engine.execute))
    monkeypatch.setattr(engine, "stream", recorded(engine.stream))
    optimized, streamed_natively = ROUTED["optimized"], ROUTED["native_streaming_handler"]
    with teola_executor():
        assert optimize(graph).invoke(question) == native
        assert ROUTED["optimized"] - optimized == 4  # each node's chain ran as Teola's plan
        # answer -> report -> end; rewrite -> keywords -> title -> report -> end
        assert set(priorities) == {-2, -4, -3}
        messages, _ = _messages(optimize(graph).stream(question, stream_mode="messages"))
    assert messages == native_messages  # LangGraph's messages handler watched: the chains streamed natively
    assert ROUTED["native_streaming_handler"] - streamed_natively == 4


def test_a_langgraph_without_what_teola_hooks_runs_graphs_as_langgraph_does(monkeypatch, caplog):
    from teola.adapters.langgraph import compat

    monkeypatch.setattr(compat, "missing_internals", lambda: ["langgraph.pregel._runner.run_with_retry"])
    graph = barrier_graph()
    native = graph.invoke({"question": "q"})
    started = EARLY["started"]
    with caplog.at_level("WARNING", logger="teola_integrations.langgraph"):
        assert optimize(graph).invoke({"question": "q"}) == native
    assert EARLY["started"] == started
    assert any("lacks langgraph.pregel._runner.run_with_retry" in r.message for r in caplog.records)
