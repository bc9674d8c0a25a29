"""Synthesizer families of one synthesize module: the ``tree_summarize``, ``simple_summarize`` and
``accumulate`` response modes (the refine loop's, ``compact`` and ``refine``, are in ``refine``),
and what every synthesizer family shares.

Each lowers to one LLM call per query (tree_summarize's first level and accumulate: their chunks'
calls sent together) whose prompt prefix, the user's template up to the context, can be prefilled
early; ``finish`` turns the answer into the Response the native synthesizer returns, and hands what
does not fit one call (a deeper tree) back to the native synthesizer.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections import OrderedDict
from typing import Any, Callable

from llama_index.core.response_synthesizers import Accumulate, SimpleSummarize, TreeSummarize
from llama_index.core.schema import MetadataMode, NodeWithScore

from teola.adapters.llama_index import compat as li
from teola.adapters.llama_index.as_asked import run_as_asked
from teola.adapters.llama_index.models import llm_for, llm_why_not
from teola.adapters.llama_index.reading import AppReading, Recogniser, render
from teola.adapters.llama_index.spans import MOST_TREE_CALLS, simple_spans, tree_spans
from teola.optimizer.ir import ModuleKind, Node, Ref
from teola.optimizer.ops import PrefixSpec, SynthesizeArgs
from teola.optimizer.values import CONTEXT_MARK, SKIPPED, Prompt, PromptPrefix

log = logging.getLogger("teola.adapters.llama_index")


def synthesizer_why_not(synth: Any, streams: bool = False) -> str | None:
    """Why a synthesizer of a family Teola lowers cannot be lowered (None: it can); ``streams``: the
    family streams its answer where the synthesizer does."""
    parts = li.synthesizer_parts(synth)
    if not parts.plain:
        return "structured output or answer filtering"
    if parts.streaming:
        why = li.stream_why_not(synth) if streams else "streaming (Teola streams the compact and refine modes' answers)"
        if why:
            return why
    return llm_why_not(parts.llm)


class _SynthesizerRecogniser(Recogniser):
    """What the one-module modes share: when one can be lowered, and the synthesize module it reads into."""

    batch = False

    def why_not(self, component: Any) -> str | None:
        return synthesizer_why_not(component)

    def read(self, reading: AppReading, synth: Any, nodes: Ref, most_nodes: int | None = None) -> Ref:
        """The synthesize module: (query, nodes) -> prompt(s) -> LLM -> the framework's Response
        (however many nodes may come)."""
        llm = li.synthesizer_parts(synth).llm
        bound = llm_for(reading, llm)
        native = self.spans(reading, synth, nodes)
        reading.graph.add(Node("synthesize", ModuleKind.SYNTHESIZE, {"query": reading.query, "nodes": nodes},
                               ("response",), SynthesizeArgs(
                                   bound.engine, bound.sampling, self.prompts(synth),
                                   PrefixSpec(template_prefix(llm, self.template(synth)), ("query",)),
                                   finish=self.finish(synth), batch=self.batch), region=native))
        return Ref("synthesize", "response")

    def _batched_prompts(self, synth: Any, pieces_of: Callable[[Any, str, list[NodeWithScore]], list[str]],
                         what: str) -> Callable[..., list[Prompt] | Any]:
        """(query, nodes) -> one prompt per piece ``pieces_of(synth, query, nodes)``, on the template
        with the query filled in (a batched mode's calls, sent together); ``SKIPPED`` when there are
        no nodes."""
        llm, template = li.synthesizer_parts(synth).llm, self.template(synth)

        def build_prompts(query: str, nodes: list[NodeWithScore]) -> list[Prompt] | Any:
            if not nodes:
                return SKIPPED
            pieces = pieces_of(synth, query, nodes)
            if len(pieces) > MOST_TREE_CALLS:
                log.info("teola: %s makes %d calls; traces show the first %d", what, len(pieces), MOST_TREE_CALLS)
            filled = template.partial_format(query_str=query)
            return [render(llm, filled, context_str=piece) for piece in pieces]

        return build_prompts

    @abc.abstractmethod
    def spans(self, reading: AppReading, synth: Any, nodes: Ref) -> str | None:
        """Declare the spans the synthesizer reports natively for the module ``synthesize``; return the
        one that what ``finish`` runs natively (refine steps, a tree's upper levels) goes under."""

    @abc.abstractmethod
    def template(self, synth: Any) -> Any:
        """The template whose part before the context is the prompts' shared prefix."""

    @abc.abstractmethod
    def prompts(self, synth: Any) -> Callable[..., Any]:
        """(query, nodes) -> the prompt (or, batched, the prompts) of the LLM call."""

    @abc.abstractmethod
    def finish(self, synth: Any) -> Callable[..., Any]:
        """(query, nodes, answer) -> the Response the native synthesizer returns."""


def finishing(synth: Any, text_of: Callable[[str, list[NodeWithScore], Any], Any]) -> Callable[..., Any]:
    """``finish`` for ``synth``: (query, nodes, answer) -> the Response it returns natively. Where the
    module made no call (``SKIPPED``), the native synthesizer answers; else ``text_of(query, nodes,
    answer)`` is the response text."""

    def finish(query: str, nodes: list[NodeWithScore], answer: Any) -> Any:
        if answer is SKIPPED:
            return run_as_asked(synth.synthesize, synth.asynthesize, query=query, nodes=nodes)
        return li.response(synth, text_of(query, nodes, answer), list(nodes))

    return finish


def template_prefix(llm: Any, template: Any) -> Callable[[str], PromptPrefix]:
    """query -> the part of a synthesis prompt before the context: the user's template rendered
    with a marker where the context goes, cut there by the engine."""

    def build_prefix(query: str) -> PromptPrefix:
        return PromptPrefix(render(llm, template.partial_format(query_str=query), context_str=CONTEXT_MARK), CONTEXT_MARK)

    return build_prefix


_UNSEEN = object()


def per_query(compute: Callable[..., Any]) -> Callable[..., Any]:
    """``compute(query, nodes, *more)`` computed once per query (and ``more``, hashable) for all the
    modules and spans that read it (the last 64 kept)."""
    remembered: OrderedDict[tuple, Any] = OrderedDict()
    lock = threading.Lock()

    def once(query: str, nodes: list[NodeWithScore], *more: Any) -> Any:
        key = (query, tuple(n.node.node_id for n in nodes), *more)
        with lock:  # queries in flight on other threads add and drop entries
            value = remembered.get(key, _UNSEEN)
        if value is _UNSEEN:
            value = compute(query, nodes, *more)
            with lock:
                remembered[key] = value
                while len(remembered) > 64:
                    remembered.popitem(last=False)
        return value

    return once


class TreeSummarizeRecogniser(_SynthesizerRecogniser):
    """``response_mode="tree_summarize"``: its first level's calls, one per repacked chunk, sent
    together (LlamaIndex sends them one after another with use_async=False; they are independent)."""

    family = "the 'tree_summarize' response mode"
    batch = True

    def accepts(self, component: Any) -> bool:
        return type(component) is TreeSummarize

    def template(self, synth: Any) -> Any:
        return li.synthesizer_parts(synth).summary_template

    def prompts(self, synth: TreeSummarize) -> Callable[..., list[Prompt] | Any]:
        """The first level's prompts; ``SKIPPED`` when there are no nodes."""
        return self._batched_prompts(synth, _tree_chunks, "tree_summarize's first level")

    def spans(self, reading: AppReading, synth: TreeSummarize, nodes: Ref) -> str | None:
        parts = li.synthesizer_parts(synth)
        return tree_spans(reading, synth, "synthesize", reading.query, nodes,
                          per_query(lambda query, nodes: _tree_chunks(synth, query, nodes)),
                          lambda query: parts.summary_template.partial_format(query_str=query))

    def finish(self, synth: TreeSummarize) -> Callable[..., Any]:
        """One first-level answer is the response; several are summarized further by the native
        tree_summarize, exactly as its recursion would."""
        llm = li.synthesizer_parts(synth).llm

        def summarized(query: str, nodes: list[NodeWithScore], answer: list[str]) -> Any:
            summaries = [li.parse_output(llm, text) for text in answer]
            return summaries[0] if len(summaries) == 1 else run_as_asked(
                synth.get_response, synth.aget_response, query_str=query, text_chunks=summaries)

        return finishing(synth, summarized)


def _tree_chunks(synth: TreeSummarize, query: str, nodes: list[NodeWithScore]) -> list[str]:
    """The chunks tree_summarize repacks the nodes' texts into, one first-level call each."""
    parts = li.synthesizer_parts(synth)
    texts = [n.node.get_content(metadata_mode=MetadataMode.LLM) for n in nodes]
    return parts.prompt_helper.repack(parts.summary_template.partial_format(query_str=query), text_chunks=texts,
                                      llm=parts.llm)


class SimpleSummarizeRecogniser(_SynthesizerRecogniser):
    """``response_mode="simple_summarize"``: one LLM call over the nodes' texts joined and truncated
    to fit (never a refine step)."""

    family = "the 'simple_summarize' response mode"

    def accepts(self, component: Any) -> bool:
        return type(component) is SimpleSummarize

    def template(self, synth: Any) -> Any:
        return li.synthesizer_parts(synth).text_qa_template

    def prompts(self, synth: SimpleSummarize) -> Callable[..., Prompt | Any]:
        """The prompt of its one call; ``SKIPPED`` when there are no nodes (the native synthesizer
        answers "Empty Response" without a call)."""
        parts = li.synthesizer_parts(synth)

        def build_prompt(query: str, nodes: list[NodeWithScore]) -> Prompt | Any:
            if not nodes:
                return SKIPPED
            return render(parts.llm, parts.text_qa_template.partial_format(query_str=query),
                          context_str=_truncated(synth, query, nodes))

        return build_prompt

    def spans(self, reading: AppReading, synth: SimpleSummarize, nodes: Ref) -> str | None:
        parts = li.synthesizer_parts(synth)
        return simple_spans(reading, synth, "synthesize", reading.query, nodes,
                            per_query(lambda query, nodes: {"context_str": _truncated(synth, query, nodes)}),
                            lambda query: parts.text_qa_template.partial_format(query_str=query))

    def finish(self, synth: SimpleSummarize) -> Callable[..., Any]:
        llm = li.synthesizer_parts(synth).llm
        return finishing(synth, lambda query, nodes, answer: li.parse_output(llm, answer) or "Empty Response")


def _truncated(synth: SimpleSummarize, query: str, nodes: list[NodeWithScore]) -> list[str]:
    """What simple_summarize passes its template as ``context_str``: the nodes' texts joined by newlines,
    truncated to fit (a one-item list, which the template renders as a list, as natively)."""
    parts = li.synthesizer_parts(synth)
    joined = "\n".join(n.node.get_content(metadata_mode=MetadataMode.LLM) for n in nodes)
    return parts.prompt_helper.truncate(prompt=parts.text_qa_template.partial_format(query_str=query),
                                        text_chunks=[joined], llm=parts.llm)


class AccumulateRecogniser(_SynthesizerRecogniser):
    """``response_mode="accumulate"``: one independent LLM call per (repacked) node text, sent together
    (LlamaIndex sends them one after another unless ``use_async=True``), answers numbered and joined."""

    family = "the 'accumulate' response mode"
    batch = True

    def accepts(self, component: Any) -> bool:
        return type(component) is Accumulate

    def template(self, synth: Any) -> Any:
        return li.synthesizer_parts(synth).text_qa_template

    def prompts(self, synth: Accumulate) -> Callable[..., list[Prompt] | Any]:
        """One prompt per piece of each node's text; ``SKIPPED`` when there are no nodes."""
        return self._batched_prompts(synth, _accumulate_pieces, "accumulate")

    def spans(self, reading: AppReading, synth: Accumulate, nodes: Ref) -> str | None:
        parts = li.synthesizer_parts(synth)
        # each call's arguments as Accumulate passes them: the piece, and its template with the query left open
        open_template = parts.text_qa_template.partial_format(query_str="{query_str}")
        return tree_spans(reading, synth, "synthesize", reading.query, nodes,
                          per_query(lambda query, nodes: _accumulate_pieces(synth, query, nodes)),
                          lambda query: parts.text_qa_template.partial_format(query_str=query),
                          extra_args={"template": open_template})

    def finish(self, synth: Accumulate) -> Callable[..., Any]:
        llm = li.synthesizer_parts(synth).llm
        return finishing(synth, lambda query, nodes, answer: li.accumulated(synth, [li.parse_output(llm, a) for a in answer]))


def _accumulate_pieces(synth: Accumulate, query: str, nodes: list[NodeWithScore]) -> list[str]:
    """The context of each of accumulate's calls: every node's text, repacked to fit one call."""
    parts = li.synthesizer_parts(synth)
    template = parts.text_qa_template.partial_format(query_str=query)
    return [piece for n in nodes for piece in parts.prompt_helper.repack(
        template, [n.node.get_content(metadata_mode=MetadataMode.LLM)], llm=parts.llm)]


SYNTHESIZERS: tuple[Recogniser, ...] = (TreeSummarizeRecogniser(), SimpleSummarizeRecogniser(), AccumulateRecogniser())
