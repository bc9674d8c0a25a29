"""The history rule: which channels differ between the state an early run saw and the real one."""

from teola.adapters.langgraph.early_start import Entry, conflicting_channels

B1, A, B2 = Entry(object(), frozenset({"trail"})), Entry(object(), frozenset({"slow", "branch:to:join"})), Entry(object(), frozenset({"trail"}))


def test_a_task_missing_from_the_early_state_conflicts_on_what_it_wrote():
    basis = {1: {("f1",): B1}}
    real = {1: {("f1",): B1, ("slow",): A}}
    assert conflicting_channels(basis, real) == {"slow", "branch:to:join"}


def test_the_same_writes_do_not_conflict_and_other_writes_of_a_task_do():
    assert conflicting_channels({1: {("f1",): B1}, 2: {("f2",): B2}}, {1: {("f1",): B1}, 2: {("f2",): B2}}) == set()
    rerun = Entry(object(), frozenset({"trail", "extra"}))
    assert conflicting_channels({2: {("f2",): B2}}, {2: {("f2",): rerun}}) == {"trail", "extra"}


def test_a_step_the_history_does_not_have_yet_is_unknown():
    assert conflicting_channels({1: {("f1",): B1}, 2: {}}, {1: {("f1",): B1}}) is None
