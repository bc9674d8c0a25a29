"""A pytest plugin that runs a whole test session with Teola as LangChain's executor.

``pytest -p teola_integrations.langchain.pytest_plugin`` runs any LangChain test suite (langchain-core's
own included, see ``scripts/langchain-core-suite``) with every RunnableSequence and
RunnableParallel going through Teola.
"""

from __future__ import annotations

import pytest

from teola_integrations.langchain.executor import ROUTED, disable_teola_executor, enable_teola_executor


def pytest_configure(config: pytest.Config) -> None:
    """Switch Teola's executor on before any test runs."""
    enable_teola_executor()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Give LangChain its executor back."""
    disable_teola_executor()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many chain invocations went through Teola, so a run cannot pass by routing nothing."""
    terminalreporter.write_line(
        f"teola executor: {ROUTED['level']} invocations level by level, {ROUTED['optimized']} as optimized plans, "
        f"{ROUTED['native_in_running_loop']} sync invokes inside a running loop left to LangChain")
