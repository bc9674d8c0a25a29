"""Every private or internal langchain-core name Teola uses exists in the installed langchain-core."""

from teola.adapters.langchain import compat as langchain_compat


def test_no_private_or_internal_name_teola_uses_has_moved():
    assert langchain_compat.moved_names() == []


def test_a_moved_name_is_named(monkeypatch):
    monkeypatch.setitem(langchain_compat.INTERNAL_NAMES, "langchain_core.runnables.utils", ("coro_with_context", "gone"))
    assert langchain_compat.moved_names() == ["langchain_core.runnables.utils.gone"]
