"""A pytest plugin that runs a whole test session with Teola's LangGraph switch on.

``pytest -p teola_integrations.langgraph.pytest_plugin`` runs any LangGraph test suite (langgraph's own,
see ``scripts/langgraph-suite``) with early starts on for every compiled graph. ``--teola-assume-pure``
takes every node as pure, so that the early-start machinery runs on every graph of the suite.
"""

from __future__ import annotations

import pytest

from teola_integrations.langgraph import EARLY, disable, enable


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--teola-assume-pure``: every node may start early (the stress mode)."""
    parser.addoption("--teola-assume-pure", action="store_true", help="Teola: take every LangGraph node as pure")


def pytest_configure(config: pytest.Config) -> None:
    """Switch early starts on before any test runs."""
    enable(assume_pure=config.getoption("--teola-assume-pure"))


def pytest_unconfigure(config: pytest.Config) -> None:
    """Switch them off."""
    disable()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many early runs started, were adopted and were run again, so a run cannot pass by
    starting nothing early."""
    terminalreporter.write_line(
        f"teola langgraph: {EARLY['started']} early runs started, {EARLY['adopted']} adopted, "
        f"{EARLY['rerun']} run again in their step"
    )
