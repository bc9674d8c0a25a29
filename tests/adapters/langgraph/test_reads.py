"""What a node read of its state: key by key, or all of it."""

import copy
import json

import pytest

from teola.adapters.langgraph.reads import ReadRecordingState, Reads


def state() -> tuple[ReadRecordingState, Reads]:
    reads = Reads()
    return ReadRecordingState({"question": "q", "trail": [1], "slow": "S"}, reads), reads


def test_reading_keys_notes_those_keys_only():
    s, reads = state()
    assert s["question"] == "q" and s.get("trail") == [1] and s.get("missing") is None
    assert "other" not in s
    assert reads.keys == {"question", "trail", "missing", "other"}
    assert not reads.everything
    assert reads.touches({"trail"}) and not reads.touches({"slow"}) and not reads.touches(set())


@pytest.mark.parametrize(
    "whole",
    [list, dict, len, repr, json.dumps, copy.copy, copy.deepcopy, lambda s: {**s}, lambda s: s == {},
     lambda s: s.items(), lambda s: s.values(), lambda s: s.copy(), lambda s: s | {"x": 1}, lambda s: f(**s)],
)
def test_seeing_the_whole_state_notes_everything(whole):
    s, reads = state()
    whole(s)
    assert reads.everything and reads.touches({"slow"})


def f(**kwargs):
    return kwargs


def test_the_values_are_the_states():
    s, _ = state()
    assert dict(s) == {"question": "q", "trail": [1], "slow": "S"} and isinstance(s, dict)
    assert json.loads(json.dumps(s)) == {"question": "q", "trail": [1], "slow": "S"}


def test_conditional_edge_reads_note_channels():
    reads = Reads()
    reads.note_channels("a")
    reads.note_channels(["b", "c"])
    assert reads.keys == {"a", "b", "c"}
