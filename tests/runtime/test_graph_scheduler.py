"""Pure graph-execution logic, on zero-cost engines defined here (no models needed)."""

import asyncio
import gc
import weakref
from dataclasses import dataclass

import pytest

from teola.optimizer.ir import Graph, GraphError, Node, Op, QueryInput, Ref, Region
from teola.optimizer.ops import CALLABLE, DecodeArgs, EngineId, EngineKind, FnArgs, Meta, ParseArgs, PromptArgs
from teola.optimizer.regions import RegionObserver
from teola.optimizer.values import SKIPPED, Failed, Sampling
from teola.runtime.engine_scheduler import CallablePool, EngineScheduler
from teola.runtime.errors import PrimitiveError, TeolaRuntimeError
from teola.runtime.graph_scheduler import GraphScheduler
from teola.runtime.policy import ArrivalOrder, depths_to_outputs

SLEEP = EngineId(EngineKind.CALLABLE, "sleep")
LLM = EngineId(EngineKind.LLM, "llm")


@dataclass(frozen=True)
class Sleep:
    """A call that takes ``seconds``, then fails or returns ``value`` or its inputs joined."""

    seconds: float = 0
    fail: bool = False
    value: object = None

    def __call__(self, **args):
        if self.fail:
            raise ValueError("boom")
        return self.value if self.value is not None else "+".join(str(v) for v in args.values())


class SleepEngine(EngineScheduler):
    """Runs ``Sleep`` calls, counting how many run at once."""

    def __init__(self) -> None:
        super().__init__(SLEEP)
        self.running = 0
        self.max_running = 0

    async def execute(self, request):
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await asyncio.sleep(request.fn.seconds)
            return request.fn(**request.kwargs)
        finally:
            self.running -= 1


def _sleep(name: str, inputs: dict, **sleep) -> Node:
    return Node(name, Op.CALL, inputs, ("out",), FnArgs(Sleep(**sleep)), SLEEP)


def _diamond(fail: str = "") -> Graph:
    g = Graph()
    g.add(_sleep("a", {"q": QueryInput("query_str")}, seconds=0.05, fail=fail == "a"))
    g.add(_sleep("b", {"q": QueryInput("query_str")}, seconds=0.05, fail=fail == "b"))
    g.add(_sleep("c", {"x": Ref("a", "out"), "y": Ref("b", "out")}))
    g.set_output("answer", Ref("c", "out"))
    return g


def test_independent_branches_run_at_the_same_time_and_join():
    engine = SleepEngine()
    outputs, trace = asyncio.run(GraphScheduler(_diamond(), {"sleep": engine}).run({"query_str": "q"}))
    assert outputs == {"answer": "q+q"}
    assert engine.max_running == 2
    spans = {s.node: s for s in trace.spans}
    assert spans["c"].start >= max(spans["a"].end, spans["b"].end)


def test_a_failing_primitive_fails_its_query_with_its_name_and_cause():
    with pytest.raises(PrimitiveError, match="primitive 'b' \\(call on the sleep engine\\) failed: ValueError: boom"):
        asyncio.run(GraphScheduler(_diamond(fail="b"), {"sleep": SleepEngine()}).run({"query_str": "q"}))


def test_one_failing_query_leaves_concurrent_queries_alone():
    engine = SleepEngine()

    async def main():
        good, bad = GraphScheduler(_diamond(), {"sleep": engine}), GraphScheduler(_diamond(fail="a"), {"sleep": engine})
        return await asyncio.gather(good.run({"query_str": "1"}), bad.run({"query_str": "2"}),
                                    good.run({"query_str": "3"}), return_exceptions=True)

    first, second, third = asyncio.run(main())
    assert first[0] == {"answer": "1+1"} and third[0] == {"answer": "3+3"}
    assert isinstance(second, PrimitiveError) and second.node == "a"


def test_skipped_values_skip_consumers_unless_they_opt_in():
    g = Graph()
    g.add(_sleep("maybe", {"q": QueryInput("query_str")}, value=SKIPPED))
    g.add(_sleep("use", {"x": Ref("maybe", "out")}, value="ran"))
    g.add(Node("finish", Op.CALL, {"x": Ref("use", "out")}, ("out",),
               FnArgs(lambda x: "fallback" if x is SKIPPED else x, runs_on_skipped=("x",)), CALLABLE))
    g.set_output("answer", Ref("finish", "out"))
    engines = {"sleep": SleepEngine(), "callable": CallablePool(CALLABLE)}
    outputs, trace = asyncio.run(GraphScheduler(g, engines).run({"query_str": "q"}))
    assert outputs == {"answer": "fallback"}
    assert "use" not in {s.node for s in trace.spans}


def test_a_skipped_input_not_named_in_runs_on_skipped_skips_the_node():
    g = Graph()
    g.add(_sleep("maybe", {"q": QueryInput("query_str")}, value=SKIPPED))
    g.add(Node("finish", Op.CALL, {"x": Ref("maybe", "out"), "gate": Ref("maybe", "out")}, ("out",),
               FnArgs(lambda x, gate: "ran", runs_on_skipped=("x",)), CALLABLE))
    g.set_output("answer", Ref("finish", "out"))
    engines = {"sleep": SleepEngine(), "callable": CallablePool(CALLABLE)}
    outputs, trace = asyncio.run(GraphScheduler(g, engines).run({"query_str": "q"}))
    assert outputs == {"answer": SKIPPED}  # a gated branch's finish does not run for a branch not taken
    assert "finish" not in {s.node for s in trace.spans}
    g.add(Node("wrong", Op.CALL, {"x": Ref("maybe", "out")}, ("out",), FnArgs(_handled, runs_on_skipped=("y",)),
               CALLABLE))
    with pytest.raises(GraphError, match="runs without inputs \\['y'\\]"):
        g.lint(Op)


def _handled(x, q):
    return f"handled {type(x.error).__name__}: {x.error}" if isinstance(x, Failed) else x


def test_a_node_that_catches_an_input_reads_its_failure_as_a_value_and_the_query_goes_on():
    g = _diamond(fail="a")  # a fails; c reads a and b
    g.add(Node("catch", Op.CALL, {"x": Ref("a", "out"), "q": QueryInput("query_str")}, ("out",),
               FnArgs(_handled, catches=("x",)), CALLABLE))
    g.set_output("answer", Ref("catch", "out"))  # in place of c's
    engines = {"sleep": SleepEngine(), "callable": CallablePool(CALLABLE)}
    outputs, trace = asyncio.run(GraphScheduler(g, engines).run({"query_str": "q"}))
    assert outputs == {"answer": "handled ValueError: boom"}  # the component's own error, unwrapped
    assert "c" not in {s.node for s in trace.spans}  # a consumer that does not catch fails with it
    g.set_output("joined", Ref("c", "out"))
    with pytest.raises(PrimitiveError, match="primitive 'a'"):
        asyncio.run(GraphScheduler(g, engines).run({"query_str": "q"}))


def test_only_the_inputs_named_are_caught():
    g = _diamond(fail="b")
    g.add(Node("catch", Op.CALL, {"x": Ref("a", "out"), "q": Ref("b", "out")}, ("out",),
               FnArgs(_handled, catches=("x",)), CALLABLE))
    g.set_output("answer", Ref("catch", "out"))
    engines = {"sleep": SleepEngine(), "callable": CallablePool(CALLABLE)}
    with pytest.raises(PrimitiveError, match="primitive 'b'"):
        asyncio.run(GraphScheduler(g, engines).run({"query_str": "q"}))
    g.add(Node("wrong", Op.CALL, {"x": Ref("a", "out")}, ("out",), FnArgs(_handled, catches=("y",)), CALLABLE))
    with pytest.raises(GraphError, match="catches the failure of inputs \\['y'\\]"):
        g.lint(Op)


def test_missing_engines_and_inputs_are_named():
    with pytest.raises(TeolaRuntimeError, match="needs engines \\['sleep'\\]"):
        GraphScheduler(_diamond(), {})
    with pytest.raises(TeolaRuntimeError, match="missing inputs \\['query_str'\\]"):
        asyncio.run(GraphScheduler(_diamond(), {"sleep": SleepEngine()}).run({}))


def test_multi_output_nodes_must_return_a_mapping_of_their_outputs():
    g = Graph()
    g.add(Node("split", Op.CALL, {"q": QueryInput("query_str")}, ("head", "tail"),
               FnArgs(lambda q: {"head": q[0], "tail": q[1:]}), CALLABLE))
    g.add(Node("bad", Op.CALL, {"q": QueryInput("query_str")}, ("x", "y"), FnArgs(lambda q: q), CALLABLE))
    g.set_output("tail", Ref("split", "tail"))
    outputs, _ = asyncio.run(GraphScheduler(g, {"callable": CallablePool(CALLABLE)}).run({"query_str": "abc"}))
    assert outputs == {"tail": "bc"}
    g.set_output("x", Ref("bad", "x"))
    with pytest.raises(PrimitiveError, match="expected a mapping with keys"):
        asyncio.run(GraphScheduler(g, {"callable": CallablePool(CALLABLE)}).run({"query_str": "abc"}))


def test_cancelling_a_query_cancels_its_running_primitives():
    engine = SleepEngine()
    g = Graph()
    g.add(_sleep("slow", {"q": QueryInput("query_str")}, seconds=30))
    g.set_output("out", Ref("slow", "out"))

    async def main():
        task = asyncio.ensure_future(GraphScheduler(g, {"sleep": engine}).run({"query_str": "q"}))
        await asyncio.sleep(0.05)
        assert engine.running == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        return engine.running

    assert asyncio.run(main()) == 0


def test_primitives_reach_engines_with_their_distance_from_the_output_as_priority():
    g = _diamond()
    g.add(_sleep("d", {"q": QueryInput("query_str")}))
    g.replace(g["c"].with_inputs(z=Ref("d", "out")))
    g.replace(g["a"].with_inputs(q=Ref("d", "out")))
    assert depths_to_outputs(g) == {"d": 2, "a": 1, "b": 1, "c": 0}
    seen = {}

    class Recorder(SleepEngine):
        async def execute(self, request):
            seen[request.id.split(":", 1)[1]] = request.priority
            return await super().execute(request)

    asyncio.run(GraphScheduler(g, {"sleep": Recorder()}).run({"query_str": "q"}, priority=3))
    assert seen == {"d": (3, -2), "a": (3, -1), "b": (3, -1), "c": (3, 0)}
    asyncio.run(GraphScheduler(g, {"sleep": Recorder()}, ArrivalOrder()).run({"query_str": "q"}, priority=3))
    assert seen == {"d": (3, 0), "a": (3, 0), "b": (3, 0), "c": (3, 0)}  # another policy: the query's order alone


class StreamingEngine(EngineScheduler):
    """An LLM engine whose nodes must all stream."""

    def __init__(self) -> None:
        super().__init__(LLM)

    async def execute(self, request):
        raise AssertionError("a streaming node must be streamed")


class BrokenStream(StreamingEngine):
    """Streams two lines, then its engine fails."""

    async def stream(self, request):
        yield "one\ntwo\n"
        raise RuntimeError("engine died mid-stream")


def _streamed_plan() -> Graph:
    def lines(text):
        return text.split()

    g = Graph()
    g.add(Node("decode", Op.DECODE, {"tokens": QueryInput("query_str")}, ("text",), DecodeArgs(Sampling()), LLM,
               meta=Meta(stream=True)))
    g.add(Node("first", Op.PARSE, {"text": Ref("decode", "text")}, ("items",), ParseArgs(lines, 2), CALLABLE,
               meta=Meta(items=(0, 1))))
    g.add(Node("all", Op.PARSE, {"text": Ref("decode", "text")}, ("items",), ParseArgs(lines, 2), CALLABLE))
    g.add(Node("join", Op.CALL, {"a": Ref("first", "items"), "b": Ref("all", "items")}, ("out",),
               FnArgs(lambda a, b: (a, b)), CALLABLE))
    g.set_output("out", Ref("join", "out"))
    return g


def test_a_stream_that_fails_midway_fails_its_query_naming_the_decode_not_a_partial_answer():
    engines = {"llm": BrokenStream(), "callable": CallablePool(CALLABLE)}
    with pytest.raises(PrimitiveError, match="primitive 'decode' .*engine died mid-stream"):
        asyncio.run(asyncio.wait_for(GraphScheduler(_streamed_plan(), engines).run({"query_str": "q"}), 5))


def test_a_streaming_node_on_an_engine_that_cannot_stream_fails_instead_of_hanging():
    engines = {"llm": StreamingEngine(), "callable": CallablePool(CALLABLE)}
    with pytest.raises(PrimitiveError, match="does not stream"):
        asyncio.run(asyncio.wait_for(GraphScheduler(_streamed_plan(), engines).run({"query_str": "q"}), 5))


class SlowStream(StreamingEngine):
    """Streams three words, one per tick."""

    async def stream(self, request):
        for word in ("streamed ", "word ", "by word"):
            await asyncio.sleep(0.01)
            yield word


def test_a_streamed_output_is_returned_at_once_and_goes_on_filling():
    g = Graph()
    g.add(Node("decode", Op.DECODE, {"tokens": QueryInput("query_str")}, ("text",), DecodeArgs(Sampling()), LLM,
               meta=Meta(stream=True)))
    g.set_output("answer", Ref("decode", "text"))

    async def main():
        outputs, trace = await GraphScheduler(g, {"llm": SlowStream()}).run({"query_str": "q"})
        answer = outputs["answer"]
        assert not answer.done  # returned before the decode ended
        assert "".join([piece async for piece in answer.deltas()]) == "streamed word by word"
        await asyncio.sleep(0)
        assert [span.node for span in trace.spans] == ["decode"]

    asyncio.run(main())


class StreamWatcher(RegionObserver):
    """Logs a region on a streamed answer: its start, each piece it is told, its end."""

    def __init__(self, log: list) -> None:
        self.log = log

    def start(self, parent, inputs, query):
        self.log.append("start")

    async def delta(self, handle, key, piece):
        self.log.append(piece)

    async def end(self, handle, outputs):
        await asyncio.sleep(0.01)  # a slow callback handler
        self.log.append(("end", outputs["text"]))

    def fail(self, handle, error):
        self.log.append("fail")


def test_a_region_on_a_streamed_answer_is_told_each_piece_and_its_reader_sees_the_end_after_it_ended():
    log: list = []
    g = Graph()
    g.add(Node("decode", Op.DECODE, {"tokens": QueryInput("query_str")}, ("text",), DecodeArgs(Sampling()), LLM,
               meta=Meta(stream=True)))
    g.set_output("answer", Ref("decode", "text"))
    g.add_region(Region("model", {"value": QueryInput("query_str")}, {"text": Ref("decode", "text")}, StreamWatcher(log)))
    g.lint(Op)

    async def main():
        outputs, _ = await GraphScheduler(g, {"llm": SlowStream()}).run({"query_str": "q"})
        pieces = [piece async for piece in outputs["answer"].deltas()]
        log.append("reader saw the end")
        return pieces

    assert "".join(asyncio.run(main())) == "streamed word by word"
    assert log[0] == "start" and "".join(log[1:-2]) == "streamed word by word"
    assert log[-2:] == [("end", "streamed word by word"), "reader saw the end"]


class EndWatcher(RegionObserver):
    """Logs when a region ends, and with what."""

    def __init__(self, log: list) -> None:
        self.log = log

    def start(self, parent, inputs, query):
        return None

    async def end(self, handle, outputs):
        await asyncio.sleep(0.01)
        self.log.append(("end", outputs["value"]))

    def fail(self, handle, error):
        self.log.append("fail")


def test_a_stream_passed_on_is_returned_at_once_while_what_reads_it_whole_finishes_before_its_reader_sees_the_end():
    """A route's answer: the decode streams to the output through a node that takes it as a stream,
    and a framework callable reads its text whole; the region on that callable's output ends before
    the stream's reader sees the end."""
    log: list = []
    g = Graph()
    g.add(Node("decode", Op.DECODE, {"tokens": QueryInput("query_str")}, ("text",), DecodeArgs(Sampling()), LLM,
               meta=Meta(stream=True)))
    g.add(Node("parse", Op.CALL, {"text": Ref("decode", "text")}, ("out",), FnArgs(lambda text: text.upper()), CALLABLE))
    g.add(Node("answer", Op.CALL, {"text": Ref("decode", "text")}, ("out",),
               FnArgs(lambda text: text, reads_streams=("text",)), CALLABLE))
    g.set_output("answer", Ref("answer", "out"))
    g.add_region(Region("parser", {"value": QueryInput("query_str")}, {"value": Ref("parse", "out")}, EndWatcher(log)))
    g.lint(Op)

    async def main():
        outputs, _ = await GraphScheduler(g, {"llm": SlowStream(), "callable": CallablePool(CALLABLE)}).run(
            {"query_str": "q"})
        assert not outputs["answer"].done  # returned before the decode ended
        pieces = [piece async for piece in outputs["answer"].deltas()]
        log.append("reader saw the end")
        return pieces

    assert "".join(asyncio.run(main())) == "streamed word by word"
    assert log == [("end", "STREAMED WORD BY WORD"), "reader saw the end"]


def test_a_node_naming_a_stream_input_it_does_not_have_is_refused():
    g = Graph()
    g.add(Node("a", Op.CALL, {"x": QueryInput("query_str")}, ("out",), FnArgs(str, reads_streams=("y",)), CALLABLE))
    g.set_output("out", Ref("a", "out"))
    with pytest.raises(GraphError, match=r"reads as streams inputs \['y'\]"):
        g.lint(Op)


class Endless(StreamingEngine):
    """Streams one word, then nothing until cancelled."""

    async def stream(self, request):
        yield "first"
        await asyncio.Event().wait()


def test_a_callable_reading_inputs_later_answers_before_they_are_known_and_what_it_left_is_cancelled():
    """The first decode's stream is picked as soon as it starts, while the second decode is still
    running; the query returns the stream, and the second decode is cancelled."""
    cancelled = []

    class Watched(Endless):
        async def stream(self, request):
            try:
                async for piece in super().stream(request):
                    yield piece
            except asyncio.CancelledError:
                cancelled.append(request)
                raise

    async def pick(first, second):
        return await first  # the second is never read

    g = Graph()
    g.add(Node("first", Op.DECODE, {"tokens": QueryInput("query_str")}, ("text",), DecodeArgs(Sampling()), LLM,
               meta=Meta(stream=True)))
    g.add(Node("second", Op.DECODE, {"tokens": QueryInput("query_str")}, ("text",), DecodeArgs(Sampling()),
               EngineId(EngineKind.LLM, "other"), meta=Meta(stream=True)))
    g.add(Node("pick", Op.CALL, {"first": Ref("first", "text"), "second": Ref("second", "text")}, ("out",),
               FnArgs(pick, reads_later=("first", "second")), CALLABLE))
    g.set_output("answer", Ref("pick", "out"))
    g.lint(Op)

    async def main():
        engines = {"llm": SlowStream(), "other": Watched(), "callable": CallablePool(CALLABLE)}
        outputs, _ = await asyncio.wait_for(GraphScheduler(g, engines).run({"query_str": "q"}), 5)
        assert not outputs["answer"].done  # returned as the first decode started, the second still running
        text = "".join([piece async for piece in outputs["answer"].deltas()])
        await asyncio.sleep(0)
        return text

    assert asyncio.run(main()) == "streamed word by word"
    assert len(cancelled) == 1


def test_a_callable_reading_later_must_be_a_coroutine_function_and_name_its_inputs():
    with pytest.raises(ValueError, match="must be a coroutine function"):
        FnArgs(lambda x: x, reads_later=("x",))

    async def pick(x):
        return await x

    g = Graph()
    g.add(Node("a", Op.CALL, {"x": QueryInput("query_str")}, ("out",), FnArgs(pick, reads_later=("y",)), CALLABLE))
    g.set_output("out", Ref("a", "out"))
    with pytest.raises(GraphError, match=r"reads later inputs \['y'\]"):
        g.lint(Op)


def test_a_prompt_reads_a_streamed_text_whole():
    g = Graph()
    g.add(Node("decode", Op.DECODE, {"tokens": QueryInput("query_str")}, ("text",), DecodeArgs(Sampling()), LLM,
               meta=Meta(stream=True)))
    g.add(Node("prompt", Op.PROMPT, {"text": Ref("decode", "text")}, ("prompt",),
               PromptArgs(lambda text: f"<{text}>"), CALLABLE))
    g.set_output("prompt", Ref("prompt", "prompt"))

    async def main():
        outputs, _ = await GraphScheduler(g, {"llm": SlowStream(), "callable": CallablePool(CALLABLE)}).run(
            {"query_str": "q"})
        return outputs["prompt"]

    assert asyncio.run(main()) == "<streamed word by word>"


def test_a_region_waiting_on_what_follows_a_streamed_answer_and_the_regions_below_it_do_not_hold_the_query():
    """A region that starts on what only the answer's end gives (an LLM call's spans placed where its
    reader reads it) and its child, which reads nothing streamed but starts after it, end with the
    stream, not before the query returns."""
    log: list = []

    async def whole(text):
        return await (await text).whole()

    g = Graph()
    g.add(Node("decode", Op.DECODE, {"tokens": QueryInput("query_str")}, ("text",), DecodeArgs(Sampling()), LLM,
               meta=Meta(stream=True)))
    g.add(Node("after", Op.CALL, {"text": Ref("decode", "text")}, ("out",), FnArgs(whole, reads_later=("text",)),
               CALLABLE))
    g.set_output("answer", Ref("decode", "text"))
    g.add_region(Region("parent", {"value": Ref("after", "out")}, {"value": Ref("after", "out")}, EndWatcher(log)))
    g.add_region(Region("child", {"value": QueryInput("query_str")}, {"value": QueryInput("query_str")},
                        EndWatcher(log), parent="parent"))
    g.lint(Op)

    async def main():
        engines = {"llm": Endless(), "callable": CallablePool(CALLABLE)}
        outputs, _ = await asyncio.wait_for(GraphScheduler(g, engines).run({"query_str": "q"}), 5)
        assert log == []  # returned: nothing waited for the stream's end
        async for piece in outputs["answer"].deltas():
            assert piece == "first"
            break  # the reader stops: the decode ends, what follows it runs, the regions report
        for _ in range(20):
            await asyncio.sleep(0.01)
        return log

    assert asyncio.run(main()) == [("end", "q"), ("end", "first")]


class Answer:
    """What a query answers beside its stream (weakly referable)."""


def test_what_a_query_answered_is_freed_once_its_caller_drops_it_while_its_stream_runs_on():
    """Nodes and regions left running after a streamed answer hold only what they read: the query's
    other outputs go once the caller drops them, not when the stream ends."""
    log: list = []

    async def whole(text):
        return await (await text).whole()

    g = Graph()
    g.add(Node("answer", Op.CALL, {"q": QueryInput("query_str")}, ("out",), FnArgs(lambda q: Answer()), CALLABLE))
    g.add(Node("decode", Op.DECODE, {"tokens": QueryInput("query_str")}, ("text",), DecodeArgs(Sampling()), LLM,
               meta=Meta(stream=True)))
    g.add(Node("after", Op.CALL, {"text": Ref("decode", "text")}, ("out",), FnArgs(lambda text: text), CALLABLE))
    g.set_output("answer", Ref("answer", "out"))
    g.set_output("text", Ref("decode", "text"))
    g.add_region(Region("on the stream", {"value": Ref("after", "out")}, {"value": Ref("after", "out")},
                        EndWatcher(log)))
    g.lint(Op)

    async def main():
        engines = {"llm": Endless(), "callable": CallablePool(CALLABLE)}
        outputs, _ = await asyncio.wait_for(GraphScheduler(g, engines).run({"query_str": "q"}), 5)
        answer, text = weakref.ref(outputs.pop("answer")), outputs.pop("text")
        gc.collect()
        assert answer() is None  # though the decode, what reads it and the region on it still run
        assert not text.done and log == []
        async for _ in text.deltas():
            break
        for _ in range(20):
            await asyncio.sleep(0.01)
        return log

    assert asyncio.run(main()) == [("end", "first")]
