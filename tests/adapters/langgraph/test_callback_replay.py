"""Recorded callbacks reach the real handlers, in order, rewritten to the real task."""

from uuid import uuid4

from langchain_core.callbacks import BaseCallbackHandler, CallbackManager

from teola.adapters.langchain.compat import TAPPING_HANDLER
from teola.adapters.langgraph.callback_replay import STREAM_WRITE, CallbackRecorder, Rewrite, recorder_for, replay


class Seen(BaseCallbackHandler):
    def __init__(self):
        self.events = []

    def on_chain_start(self, serialized, inputs, **kwargs):
        self.events.append(("start", inputs, kwargs["metadata"]))

    def on_chain_end(self, outputs, **kwargs):
        self.events.append(("end", outputs))


class IgnoresChains(Seen):
    ignore_chain = True


def test_events_are_replayed_in_order_with_the_real_input_and_task_id():
    early_input = {"q": "without the slow branch"}
    recorder = recorder_for([])
    manager = CallbackManager([recorder], metadata={"langgraph_checkpoint_ns": "f2:early-id"})
    run = manager.on_chain_start(None, early_input, run_id=uuid4())
    recorder.record(STREAM_WRITE, ({"custom": 1},), {})
    run.on_chain_end({"trail": ["x"]})
    seen, ignoring, written = Seen(), IgnoresChains(), []
    real_input = {"q": "the real state"}
    replay(recorder.events, [seen, ignoring], Rewrite(early_input, real_input, "early-id", "real-id"), written.append)
    assert seen.events == [("start", real_input, {"langgraph_checkpoint_ns": "f2:real-id"}), ("end", {"trail": ["x"]})]
    assert ignoring.events == [] and written == [{"custom": 1}]
    assert isinstance(recorder, CallbackRecorder) and not isinstance(recorder, TAPPING_HANDLER)


class Tapping(Seen, TAPPING_HANDLER):
    def __init__(self):
        super().__init__()
        self.tapped = []

    def tap_output_iter(self, run_id, output):
        for chunk in output:
            self.tapped.append((run_id, chunk))
            yield chunk

    async def tap_output_aiter(self, run_id, output):
        async for chunk in output:
            yield chunk


def test_a_streaming_handler_makes_a_streaming_recorder_and_gets_the_tapped_chunks_once_per_run():
    real = Tapping()
    recorder = recorder_for([real])
    assert isinstance(recorder, TAPPING_HANDLER)
    run_id = uuid4()
    assert list(recorder.tap_output_iter(run_id, iter([1, 2]))) == [1, 2]
    assert list(recorder.tap_output_iter(run_id, iter([3]))) == [3]
    replay(recorder.events, [real], Rewrite(None, None, "a", "b"), None)
    assert real.tapped == [(run_id, 1), (run_id, 2), (run_id, 3)]
