"""Regions reported while a query runs: order, values, errors, silence (pure graph logic, zero-cost engines)."""

import asyncio
import contextvars
from dataclasses import replace

import pytest

from teola.optimizer.ir import Graph, Node, Op, QueryInput, Ref, Region
from teola.optimizer.ops import CALLABLE, FnArgs
from teola.optimizer.regions import RegionObserver
from teola.optimizer.values import SKIPPED
from teola.runtime.engine_scheduler import CallablePool
from teola.runtime.errors import PrimitiveError
from teola.runtime.graph_scheduler import GraphScheduler


class Recorder(RegionObserver):
    """Logs every report as (event, region, values); async like a LangChain async callback manager."""

    def __init__(self, name: str, log: list, listening: bool = True) -> None:
        self.name, self.log, self.listening = name, log, listening

    def active(self, query):
        return self.listening

    async def start(self, parent, inputs, query):
        await asyncio.sleep(0)
        self.log.append(("start", self.name, parent, dict(inputs)))
        return self.name

    async def end(self, handle, outputs):
        self.log.append(("end", handle, dict(outputs)))

    def fail(self, handle, error):
        self.log.append(("fail", handle, type(error).__name__))


async def _slow_upper(q):
    await asyncio.sleep(0.02)
    return q.upper()


def _boom(q):
    raise KeyError("boom")


def _graph(log: list, middle=_slow_upper, listening: bool = True) -> Graph:
    g = Graph()
    g.add(Node("a", Op.CALL, {"q": QueryInput("query_str")}, ("out",), FnArgs(middle), CALLABLE))
    g.add(Node("b", Op.CALL, {"x": Ref("a", "out")}, ("out",), FnArgs(lambda x: x + "!"), CALLABLE))
    g.set_output("answer", Ref("b", "out"))
    g.add_region(Region("outer", {"value": QueryInput("query_str")}, {"value": Ref("b", "out")},
                        Recorder("outer", log, listening)))
    g.add_region(Region("inner", {"value": Ref("a", "out")}, {"value": Ref("b", "out")},
                        Recorder("inner", log, listening), parent="outer"))
    return g


def _run(graph: Graph, query: str = "q"):
    return asyncio.run(GraphScheduler(graph, {"callable": CallablePool(CALLABLE)}).run({"query_str": query}))


def test_regions_nest_start_on_their_inputs_and_end_before_the_query_returns():
    log: list = []
    outputs, _ = _run(_graph(log))
    assert outputs == {"answer": "Q!"}
    assert log == [("start", "outer", None, {"value": "q"}),
                   ("start", "inner", "outer", {"value": "Q"}),
                   ("end", "inner", {"value": "Q!"}),  # a child ends before its parent, as natively
                   ("end", "outer", {"value": "Q!"})]


def test_a_failure_fails_the_started_regions_with_the_components_own_error_and_skips_the_rest():
    log: list = []
    with pytest.raises(PrimitiveError):
        _run(_graph(log, middle=_boom))
    assert log == [("start", "outer", None, {"value": "q"}), ("fail", "outer", "KeyError")]  # inner never started


def test_nobody_listening_reports_nothing_and_skipped_inputs_start_nothing():
    log: list = []
    assert _run(_graph(log, listening=False))[0] == {"answer": "Q!"}
    assert log == []
    g = _graph(log, middle=lambda q: SKIPPED)
    g.replace(Node("b", Op.CALL, {"x": Ref("a", "out")}, ("out",),
                   FnArgs(lambda x: "fallback", runs_on_skipped=("x",)), CALLABLE))
    assert _run(g)[0] == {"answer": "fallback"}
    assert [entry[:2] for entry in log] == [("start", "outer"), ("end", "outer")]


class OnlyShortValues(Recorder):
    """Applies only to inputs shorter than two characters (as a span on a batch item that may not exist)."""

    def applies(self, inputs):
        return all(len(value) < 2 for value in inputs.values())


def test_a_region_that_does_not_apply_to_its_values_reports_nothing_nor_do_its_children():
    log: list = []
    g = _graph(log)
    g.regions["inner"] = Region("inner", {"value": Ref("a", "out")}, {"value": Ref("b", "out")},
                                OnlyShortValues("inner", log), parent="outer")
    g.add_region(Region("innermost", {"value": Ref("a", "out")}, {"value": Ref("b", "out")},
                        Recorder("innermost", log), parent="inner"))
    assert _run(g, "qq")[0] == {"answer": "QQ!"}
    assert [entry[:2] for entry in log] == [("start", "outer"), ("end", "outer")]
    log.clear()
    assert _run(g, "q")[0] == {"answer": "Q!"}
    assert [entry[:2] for entry in log] == [("start", "outer"), ("start", "inner"), ("start", "innermost"),
                                            ("end", "innermost"), ("end", "inner"), ("end", "outer")]


def test_a_region_not_listened_to_passes_its_children_to_its_own_parent():
    log: list = []
    g = _graph(log)
    g.regions["inner"] = Region("inner", {"value": Ref("a", "out")}, {"value": Ref("b", "out")},
                                Recorder("inner", log, listening=False), parent="outer")
    g.add_region(Region("innermost", {"value": Ref("a", "out")}, {"value": Ref("b", "out")},
                        Recorder("innermost", log), parent="inner"))
    assert _run(g)[0] == {"answer": "Q!"}
    assert log == [("start", "outer", None, {"value": "q"}), ("start", "innermost", "outer", {"value": "Q"}),
                   ("end", "innermost", {"value": "Q!"}), ("end", "outer", {"value": "Q!"})]


class Placing(Recorder):
    """Records which region the work placed in it was entered under (as a span id is set for a framework's own code)."""

    def enter(self, handle):
        _placed.set(handle)


_placed = contextvars.ContextVar("placed", default=None)


def _where_placed(x):
    return _placed.get()


def _placing_graph(log: list, inner: RegionObserver | None = None) -> Graph:
    """``a`` then ``b``, which runs as-is inside ``inner`` (under ``outer``) and says where it was placed."""
    g = Graph()
    g.add(Node("a", Op.CALL, {"q": QueryInput("query_str")}, ("out",), FnArgs(_slow_upper), CALLABLE))
    g.add(Node("b", Op.CALL, {"x": Ref("a", "out")}, ("out",), FnArgs(_where_placed), CALLABLE, region="inner"))
    g.set_output("answer", Ref("b", "out"))
    g.add_region(Region("outer", {"value": QueryInput("query_str")}, {"value": Ref("b", "out")}, Placing("outer", log)))
    g.add_region(Region("inner", {"value": Ref("a", "out")}, {"value": Ref("b", "out")},
                        inner or Placing("inner", log), parent="outer"))
    return g


def test_work_placed_in_a_region_runs_under_it_or_under_the_closest_one_reported_above_it():
    log: list = []
    assert _run(_placing_graph(log))[0] == {"answer": "inner"}
    assert _run(_placing_graph(log, Placing("inner", log, listening=False)))[0] == {"answer": "outer"}
    assert _run(_placing_graph(log, type("Never", (OnlyShortValues, Placing), {})("inner", log)), "qq")[0] == \
        {"answer": "outer"}  # it did not apply
    g = _placing_graph(log)
    for name in ("outer", "inner"):
        g.regions[name] = replace(g.regions[name], observer=Placing(name, log, listening=False))
    assert _run(g)[0] == {"answer": None}  # nobody listens: placed nowhere, and nothing waits
