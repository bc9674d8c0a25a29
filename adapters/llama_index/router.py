"""The RouterQueryEngine family: a selector chooses among candidate query engines; only the chosen run.

LlamaIndex's RouterQueryEngine asks its selector which of its candidate engines (query engine
tools) answers a query, runs the one chosen (a multi selector's several, then its summarizer
combines their answers) and puts the selector's result in the response's metadata. Teola reads
every candidate into the graph (``Graph.inline``, under its own name prefix), each behind a gate
that lets the query through only to a candidate the selector chose: a candidate not chosen neither
runs nor reports a span, as natively, and the one chosen runs as primitives, its retrieval and LLM
calls on the shared engines with every pass that applies to it. An LLM selector's call (the
selection prompt, as its ``predict`` renders it) is lowered too; other selectors (Pydantic ones
call tools) run as one call. Several chosen candidates run side by side, where a ``query`` runs
them one after another; a candidate chosen twice runs once.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from llama_index.core.query_engine import RouterQueryEngine
from llama_index.core.query_engine.router_query_engine import acombine_responses, combine_responses
from llama_index.core.schema import QueryBundle
from llama_index.core.selectors import LLMMultiSelector, LLMSingleSelector
from llama_index.core.utils import print_text

from teola.adapters.llama_index import compat as li
from teola.adapters.llama_index.as_asked import run_as_asked
from teola.adapters.llama_index.models import llm_why_not
from teola.adapters.llama_index.predict import read_as_call, read_predict_parse
from teola.adapters.llama_index.reading import AppReading, ReadInner, Recogniser
from teola.optimizer.ir import ModuleKind, Node, Ref, Source
from teola.optimizer.ops import FnArgs
from teola.optimizer.values import SKIPPED

router_log = logging.getLogger(RouterQueryEngine.__module__)  # where the router logs its choice natively


class RouterRecogniser(Recogniser):
    """A ``RouterQueryEngine``: select -> the chosen candidate engines (gated) -> the router's response."""

    family = "RouterQueryEngine"

    def accepts(self, component: Any) -> bool:
        return type(component) is RouterQueryEngine

    def why_not(self, component: Any) -> str | None:
        return None

    def read(self, reading: AppReading, engine: RouterQueryEngine, read_inner: ReadInner) -> Ref:
        """Modules ``select`` (with an LLM selector's ``select.predict``), ``route`` (the chosen
        candidates' positions), per candidate ``i`` a gate ``route{i}`` and its engine read by
        ``read_inner`` under the prefix ``route{i}/``, and ``routed``, the router's response; in the
        span being read."""
        parts = li.router_parts(engine)
        graph = reading.graph
        selection = _read_selection(reading, parts)
        graph.add(Node("route", ModuleKind.CALL, {"selection": selection}, ("chosen",),
                       FnArgs(partial(_chosen, parts), "chosen query engines"), region=reading.region))
        responses: dict[str, Source] = {}
        for i, candidate in enumerate(parts.engines):
            gate = f"route{i}"
            graph.add(Node(gate, ModuleKind.CALL, {"query": reading.query, "chosen": Ref("route", "chosen")}, ("query",),
                           FnArgs(partial(_gate, i), f"query engine {i} chosen", pure=True)))
            responses[f"response{i}"] = read_inner(reading, candidate, Ref(gate, "query"), f"{gate}/")

        def routed(query: str, selection: Any, chosen: tuple[int, ...], **answers: Any) -> Any:
            picked = [answers[f"response{i}"] for i in chosen]
            response = picked[0] if len(picked) == 1 else run_as_asked(
                combine_responses, acombine_responses, parts.summarizer, picked, QueryBundle(query))
            response.metadata = response.metadata or {}
            response.metadata["selector_result"] = selection
            return response

        graph.add(Node("routed", ModuleKind.CALL, {"query": reading.query, "selection": selection,
                                                   "chosen": Ref("route", "chosen"), **responses}, ("response",),
                       FnArgs(routed, "router response", runs_on_skipped=tuple(responses)), region=reading.region))
        return Ref("routed", "response")


def _read_selection(reading: AppReading, parts: li.RouterParts) -> Ref:
    """The selector's result (module ``select``): an LLM selector's call lowered, any other selector one call."""
    selector = parts.selector
    why = _selector_why_not(selector)
    if why:
        return read_as_call(reading, "select", selector, why, selector.select, selector.aselect, parts.metadatas)
    asked = li.selector_parts(selector, parts.metadatas)
    return read_predict_parse(reading, "select", selector, "_select",
                              lambda bundle: ((), {"choices": parts.metadatas, "query": bundle}), asked.llm, asked.prompt,
                              lambda query: {**asked.arguments, "query_str": query}, li.selector_result)


def _selector_why_not(selector: Any) -> str | None:
    """Why ``selector``'s LLM call cannot be lowered (None: it can)."""
    if type(selector) not in (LLMSingleSelector, LLMMultiSelector):
        return "Teola lowers LLMSingleSelector and LLMMultiSelector (a Pydantic selector calls tools) so far"
    return llm_why_not(li.selector_parts(selector, []).llm)


def _chosen(parts: li.RouterParts, selection: Any) -> tuple[int, ...]:
    """The positions of the candidates ``selection`` chooses, announced (logged, printed where the router
    is verbose) as the router announces them; its errors where it finds none or one out of range."""
    positions = list(range(len(parts.engines)))  # a negative index picks from the end, as natively
    if len(selection.inds) > 1:
        chosen = []
        for ind, reason in zip(selection.inds, selection.reasons):
            _announce(parts, ind, reason)
            chosen.append(positions[ind])
        return tuple(chosen)
    try:
        ind = selection.ind
        position = positions[ind]
        _announce(parts, ind, selection.reason)
    except ValueError as error:
        raise ValueError("Failed to select query engine") from error
    return (position,)


def _announce(parts: li.RouterParts, ind: int, reason: str) -> None:
    message = f"Selecting query engine {ind}: {reason}."
    router_log.info(message)
    if parts.verbose:
        print_text(message + "\n", color="pink")


def _gate(i: int, query: str, chosen: tuple[int, ...]) -> Any:
    """The query, for candidate ``i`` where it was chosen; else SKIPPED (it does not run)."""
    return query if i in chosen else SKIPPED


ROUTER = RouterRecogniser()
