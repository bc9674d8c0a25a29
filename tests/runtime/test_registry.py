"""Engines started from specs through the registry, shared by id, released with their last holder
(a zero-model engine kind registered here)."""

import gc
import threading
import time

import pytest

from teola.optimizer.ops import EngineId, EngineKind
from teola.runtime import registry
from teola.runtime.engines.base import BatchEngine
from teola.runtime.errors import TeolaRuntimeError
from teola.runtime.registry import EngineKindEntry, EngineSpec, batching
from teola.runtime.requests import EmbedRequest
from teola.runtime.runtime import Runtime


class Shout(BatchEngine):
    """Upper-cases texts; remembers whether it was closed."""

    def __init__(self, suffix: str = "") -> None:
        super().__init__()
        self.suffix = suffix
        self.closed = False
        self.settings = {"suffix": suffix}

    async def run_batch(self, requests):
        return [text.upper() + self.suffix for text in requests]

    def close(self) -> None:
        self.closed = True
        super().close()


@pytest.fixture
def shouting(monkeypatch):
    """The embedding kind, made of ``Shout`` engines for these tests."""
    embedding = registry.ENGINE_KINDS[EngineKind.EMBEDDING]
    entry = EngineKindEntry(batching(EmbedRequest), embedding.rules, lambda spec: lambda: Shout(**spec.settings))
    monkeypatch.setitem(registry.ENGINE_KINDS, EngineKind.EMBEDDING, entry)
    runtime = Runtime()
    yield runtime
    runtime.close()


class App:
    """Something that holds an engine."""


def test_a_spec_starts_its_engine_once_and_every_app_asking_for_its_id_shares_it(shouting):
    spec = EngineSpec(EngineKind.EMBEDDING, "shout", {"suffix": "!"})
    first, second = shouting.engine(spec), shouting.engine(EngineSpec(EngineKind.EMBEDDING, "shout", {"suffix": "!"}))
    assert first is second and first.id == EngineId(EngineKind.EMBEDDING, "embedding:shout") == spec.id
    assert shouting.run(first.execute(EmbedRequest(("a", "b")))) == ["A!", "B!"]
    with pytest.raises(TeolaRuntimeError, match="already runs with \\{'suffix': '!'\\}, not \\{'suffix': '\\?'\\}"):
        shouting.engine(EngineSpec(EngineKind.EMBEDDING, "shout", {"suffix": "?"}))


def test_an_engine_held_by_apps_is_released_when_the_last_one_is_gone(shouting):
    spec = EngineSpec(EngineKind.EMBEDDING, "held")
    one, two = App(), App()
    engine = shouting.engine(spec, holder=one).engine
    assert shouting.engine(spec, holder=two).engine is engine
    del one
    gc.collect()
    assert spec.id.name in shouting.engines and not engine.closed
    del two
    gc.collect()
    deadline = time.monotonic() + 5
    while not engine.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.closed and spec.id.name not in shouting.engines
    assert shouting.engine(spec).engine is not engine  # asked for again: a new one starts


def test_an_app_collected_in_another_thread_while_an_engine_starts_does_not_deadlock(shouting):
    """The garbage collector may run a holder's finalizer in a thread an engine start works in,
    while the thread that asked for the engine holds the runtime's lock waiting for that start."""
    spec = EngineSpec(EngineKind.EMBEDDING, "collected")
    app = App()
    engine = shouting.engine(spec, holder=app).engine
    finalized = threading.Event()

    def collect_elsewhere():
        nonlocal app
        del app  # the last reference: its finalizer runs here, in this thread
        gc.collect()
        finalized.set()

    with shouting._lock:  # as engine() holds it while a start runs
        collector = threading.Thread(target=collect_elsewhere)
        collector.start()
        assert finalized.wait(5), "the finalizer blocked on the runtime's lock"
    deadline = time.monotonic() + 5
    while not engine.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.closed and spec.id.name not in shouting.engines


def test_an_engine_asked_for_without_a_holder_stays(shouting):
    spec = EngineSpec(EngineKind.EMBEDDING, "kept")
    engine = shouting.engine(spec).engine
    app = App()
    shouting.engine(spec, holder=app)
    del app
    gc.collect()
    assert spec.id.name in shouting.engines and not engine.closed


def test_an_engine_built_from_data_needs_its_build():
    with pytest.raises(ValueError, match="built from data: give its spec a build"):
        registry.ENGINE_KINDS[EngineKind.VECTOR_INDEX].factory(EngineSpec(EngineKind.VECTOR_INDEX, "no-data"))


def test_a_primitive_whose_engine_kind_has_no_rule_for_its_op_is_refused_when_the_plan_is_prepared(monkeypatch):
    from teola.optimizer.ir import Graph, Node, Op, QueryInput, Ref
    from teola.optimizer.ops import EmbedArgs
    from teola.runtime.graph_scheduler import GraphScheduler

    monkeypatch.setitem(registry.ENGINE_KINDS, EngineKind.EMBEDDING, EngineKindEntry(batching(EmbedRequest), {}))
    g = Graph()
    g.add(Node("embed", Op.EMBED, {"text": QueryInput("query_str")}, ("vector",), EmbedArgs(),
               EngineId(EngineKind.EMBEDDING, "embedding:x")))
    g.set_output("vector", Ref("embed", "vector"))
    with pytest.raises(TeolaRuntimeError, match="no embedding engine serves embed primitives \\(embed\\)"):
        GraphScheduler(g, {})
