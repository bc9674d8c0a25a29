"""The refine loop as steps: the ``compact`` (default) and ``refine`` response modes.

LlamaIndex's refine loop (``Refine._run_refine_loop``) answers the first piece of the context with
the QA template, then asks the LLM to refine that answer with each next piece (the refine template,
with the answer so far as ``existing_answer``); compact mode first packs the nodes' texts into as
few chunks as fit. ``refine_calls`` is that loop as a generator of its LLM calls, so Teola and the
native loop agree on every call by construction.

Teola lowers the loop's first calls as a chain of LLM-call modules (``synthesize.step<i>``), each
reading the answers before it, and a finish step (``synthesize``) that builds the Response. What
pays: each later step's prompt up to the existing answer is known once retrieval ends (LlamaIndex's
chat refine template puts the new context and the query before it), so it is prefilled while the
steps before it decode. A loop that makes more calls than there are steps (a piece split to fit next
to a long answer, more pieces than the retriever's top-k) goes on natively in the finish step, from
where the steps left it.

A streaming synthesizer (``streaming=True``) answers with the tokens of the loop's last call. Its
steps' decodes stream; the answer step (``synthesize``) reads them as they start and returns the
``StreamingResponse`` as soon as the step it knows to be the loop's last has started (every call
knows it is the last before its answer: ``LLMCall.last``), its tokens that step's stream; the finish
step (``synthesize.whole``) answers where no step is the last.
"""

from __future__ import annotations

import asyncio
from itertools import takewhile
from typing import Any, Callable, Generator, NamedTuple, Sequence

from llama_index.core.prompts.prompt_utils import get_biggest_prompt
from llama_index.core.response_synthesizers import CompactAndRefine, Refine
from llama_index.core.schema import MetadataMode, NodeWithScore

from teola.adapters.llama_index import compat as li
from teola.adapters.llama_index.answer_tokens import answer_tokens, where_read
from teola.adapters.llama_index.as_asked import run_as_asked
from teola.adapters.llama_index.models import llm_for
from teola.adapters.llama_index.reading import AppReading, Recogniser, render
from teola.adapters.llama_index.spans import refine_spans
from teola.adapters.llama_index.synthesizers import finishing, per_query, synthesizer_why_not, template_prefix
from teola.optimizer.ir import ModuleKind, Node, Ref
from teola.optimizer.ops import FnArgs, GenerateArgs, Meta, PrefixSpec
from teola.optimizer.values import CONTEXT_MARK, SKIPPED, PromptPrefix

# the most refine calls lowered as steps when the retriever's top-k does not bound them (the rest run natively)
MOST_REFINE_STEPS = 8


class LLMCall(NamedTuple):
    """One call of the loop: a template, the variables predict() gets with it, and whether the loop
    makes no call after it (whatever it answers: its pieces are all used)."""

    template: Any
    variables: dict[str, Any]
    last: bool


RefineCalls = Generator[LLMCall, "str | None", "str | None"]


def refine_calls(synth: Refine, query: str, pieces: Sequence[str]) -> RefineCalls:
    """The refine loop over ``pieces``: yields each LLM call and is sent the call's parsed answer
    (None where the loop keeps its answer); returns the final answer (None: none)."""
    parts = li.synthesizer_parts(synth)
    pending, response = list(pieces), None
    while pending:
        piece = pending.pop(0)
        if response is None:
            call = LLMCall(parts.text_qa_template.partial_format(query_str=query), {"context_str": piece}, not pending)
        else:
            template = parts.refine_template.partial_format(query_str=query, existing_answer=response)
            repacked = parts.prompt_helper.repack(template, [piece], llm=parts.llm)
            if len(repacked) > 1:  # too big beside the answer so far: its parts go first, last part first
                pending[:0] = reversed(repacked)
                continue
            call = LLMCall(template, {"context_msg": repacked[0]}, not pending)
        answer = yield call
        response = answer or response
    return response


def refine_pieces(synth: Refine, query: str, nodes: list[NodeWithScore]) -> list[str]:
    """The pieces the loop goes through: the nodes' texts (compact mode: packed into chunks), each
    repacked to fit the bigger template with room for the answer."""
    parts = li.synthesizer_parts(synth)
    chunks = packed_chunks(synth, query, nodes) if isinstance(synth, CompactAndRefine) else _texts(nodes)
    biggest = get_biggest_prompt([parts.text_qa_template, parts.refine_template])
    return [piece for chunk in chunks
            for piece in parts.prompt_helper.repack(biggest, [chunk], llm=parts.llm, padding=parts.padding)]


def packed_chunks(synth: CompactAndRefine, query: str, nodes: list[NodeWithScore]) -> list[str]:
    """The chunks compact mode packs the nodes' texts into (its refine loop's ``text_chunks``)."""
    return li.compact_chunks(synth, query, _texts(nodes))


def next_call(synth: Refine, query: str, pieces: Sequence[str], answers: Sequence[str]) -> LLMCall | Any:
    """The loop's call after those answered by ``answers``; SKIPPED where it makes no more."""
    calls, call = replayed(synth, query, pieces, answers)
    return SKIPPED if calls is None else call


def replayed(synth: Refine, query: str, pieces: Sequence[str], answers: Sequence[str]) -> tuple[RefineCalls, Any]:
    """The loop, sent ``answers`` (raw) for its first calls: the loop and its next call (SKIPPED: it
    ended; then the loop is None and the second item is its final answer)."""
    llm = li.synthesizer_parts(synth).llm
    calls = refine_calls(synth, query, pieces)
    try:
        call = next(calls)
        for answer in answers:
            call = calls.send(li.parse_output(llm, answer))
    except StopIteration as ended:
        return None, ended.value
    return calls, call


def _native_rest(synth: Refine, calls: RefineCalls, call: LLMCall) -> Any:
    """The rest of the loop, run as the native loop runs it: ``call`` and those after it (a streaming
    loop's last call left a generator, unread, as the loop returns it)."""
    while not call.last:
        try:
            call = calls.send(li.refine_answer(synth, *call))
        except StopIteration as ended:
            return ended.value
    return li.refine_answer(synth, *call) or _ended(calls, None)


async def _anative_rest(synth: Refine, calls: RefineCalls, call: LLMCall) -> Any:
    """``_native_rest`` in an ``aquery``: the async loop's calls."""
    while not call.last:
        try:
            call = calls.send(await li.arefine_answer(synth, *call))
        except StopIteration as ended:
            return ended.value
    return await li.arefine_answer(synth, *call) or _ended(calls, None)


def _ended(calls: RefineCalls, answer: str | None) -> str | None:
    """The loop's final answer, its last call answered ``answer``."""
    try:
        calls.send(answer)
    except StopIteration as ended:
        return ended.value
    raise AssertionError("the refine loop went on past its last call")


class RefineStepsRecogniser(Recogniser):
    """``response_mode="compact"`` (the default) or ``"refine"``: the refine loop's calls as steps."""

    def __init__(self, kind: type, mode: str) -> None:
        self.kind, self.family = kind, f"the {mode!r} response mode"

    def accepts(self, component: Any) -> bool:
        return type(component) is self.kind

    def why_not(self, component: Any) -> str | None:
        return synthesizer_why_not(component, streams=True)

    def read(self, reading: AppReading, synth: Refine, nodes: Ref, most_nodes: int | None = None,
             turn: Ref | None = None) -> Ref:
        """Steps ``synthesize.step0..`` (one LLM call each: at most ``most_nodes`` when the retriever
        bounds the nodes, else ``MOST_REFINE_STEPS``) and the finish ``synthesize``. ``turn``: where
        each query's own synthesizer comes from, where it has one (a chat turn's, its templates
        holding the chat history; ``synth`` is then one of its kind, with the same LLM and prompt
        helper)."""
        parts = li.synthesizer_parts(synth)
        bound = llm_for(reading, parts.llm)
        count = min(most_nodes or MOST_REFINE_STEPS, MOST_REFINE_STEPS)
        steps = [f"synthesize.step{i}" for i in range(count)]
        query = reading.query
        own = {} if turn is None else {"synth": turn}
        pieces = per_query(lambda query, nodes, synth: refine_pieces(synth, query, nodes))
        calls = per_query(lambda query, nodes, synth, *answers: next_call(synth, query, pieces(query, nodes, synth),
                                                                          answers))
        for i, step in enumerate(steps):
            answers = {f"answer{j}": Ref(steps[j], "text") for j in range(i)}
            if i:  # skipped as soon as the call before it is known to be the last, before that call decodes
                before_last = {f"answer{j}": answers[f"answer{j}"] for j in range(i - 1)}
                reading.graph.add(Node(f"{step}.needed", ModuleKind.CALL, {"query": query, "nodes": nodes, **own,
                                                                           **before_last},
                                       ("needed",), FnArgs(self._needed(synth, calls, i), "is there a call", pure=True)))
                answers["needed"] = Ref(f"{step}.needed", "needed")
            prefix = PrefixSpec(self._qa_prefix(synth), ("query", *own)) if i == 0 else \
                PrefixSpec(self._refine_prefix(synth, pieces, i), ("query", "nodes", *own))
            reading.graph.add(Node(step, ModuleKind.GENERATE, {"query": query, "nodes": nodes, **own, **answers},
                                   ("text",), GenerateArgs(bound.engine, bound.sampling,
                                                           self._prompt(synth, calls, i), prefix),
                                   meta=Meta(stream=parts.streaming)))
        packed = per_query(lambda query, nodes, synth: packed_chunks(synth, query, nodes))
        native = refine_spans(reading, synth, query, nodes, steps, lambda v, i: calls(
            v["query"], v["nodes"], v.get("synth", synth), *(v[f"answer{j}"] for j in range(i))),
            packed=(lambda v: packed(v["query"], v["nodes"], v.get("synth", synth)))
            if isinstance(synth, CompactAndRefine) else None, turn=turn,
            read_where=Ref("synthesize.read", "place") if parts.streaming else None)
        every_answer = {f"answer{i}": Ref(step, "text") for i, step in enumerate(steps)}
        finish = "synthesize.whole" if parts.streaming else "synthesize"
        reading.graph.add(Node(finish, ModuleKind.CALL, {"query": query, "nodes": nodes, **own, **every_answer},
            ("response",), FnArgs(self._finish(synth, pieces, count), "build response", pure=True,
                                  runs_on_skipped=tuple(every_answer)),
            region=native))
        if parts.streaming:
            reading.graph.add(Node("synthesize", ModuleKind.CALL, {"query": query, "nodes": nodes, **own,
                                                                    **every_answer, "whole": Ref(finish, "response")},
                                   ("response", "text", "read"),
                                   FnArgs(self._streamed(synth, calls, count), "stream the answer", pure=True,
                                          reads_later=(*every_answer, "whole"))))
            reading.graph.add(Node("synthesize.read", ModuleKind.CALL, {"read": Ref("synthesize", "read")}, ("place",),
                                   FnArgs(where_read, "where the answer is read", pure=True, reads_later=("read",))))
            reading.stream = Ref("synthesize", "text")
        return Ref("synthesize", "response")

    @staticmethod
    def _streamed(first: Refine, calls: Callable[..., Any], count: int) -> Callable[..., Any]:
        """A streaming loop's answer, as soon as its last call starts: the Response whose tokens
        are that call's text stream (``text``; ``read``: told where its reader reads it), its steps
        before it read whole; where no step is its last call (it makes more calls than there are
        steps, or none: no nodes came), the finish step's Response (``whole``: the native loop's,
        its last call's tokens unread)."""

        async def answer(query: str, nodes: list[NodeWithScore], whole: Any, synth: Refine = first,
                         **answers: Any) -> dict[str, Any]:
            made: list[str] = []
            for i in range(count):
                text = await answers[f"answer{i}"]
                if text is SKIPPED:  # no call: no nodes came
                    break
                if calls(query, nodes, synth, *made).last:
                    read = asyncio.get_running_loop().create_future()
                    return {"response": li.response(synth, answer_tokens(text, read), list(nodes)), "text": text,
                            "read": read}
                made.append(await text.whole())
            return {"response": await whole, "text": None, "read": None}

        return answer

    @staticmethod
    def _prompt(read: Refine, calls: Callable[..., Any], i: int) -> Callable[..., Any]:
        """Step ``i``'s prompt: the loop's ``i``-th call, given the answers before it; SKIPPED where the
        loop ends sooner (or where no nodes came: the native synthesizer answers)."""
        llm = li.synthesizer_parts(read).llm

        def build_prompt(query: str, nodes: list[NodeWithScore], synth: Refine = read, needed: bool = True,
                         **answers: str) -> Any:  # ``needed`` only gates the step (``_needed``)
            if not nodes:
                return SKIPPED
            call = calls(query, nodes, synth, *(answers[f"answer{j}"] for j in range(i)))
            return SKIPPED if call is SKIPPED else render(llm, call.template, **call.variables)

        return build_prompt

    @staticmethod
    def _needed(read: Refine, calls: Callable[..., Any], i: int) -> Callable[..., Any]:
        """Whether the loop makes an ``i``-th call (``i`` > 0), from the answers before the call before
        it: SKIPPED where that call is its last (or it ends sooner), so step ``i``, its spans and what
        waits on them skip while that call decodes (a streamed answer's query ends as it returns)."""

        def needed(query: str, nodes: list[NodeWithScore], synth: Refine = read, **answers: str) -> Any:
            call = calls(query, nodes, synth, *(answers[f"answer{j}"] for j in range(i - 1))) if nodes else SKIPPED
            return SKIPPED if call is SKIPPED or call.last else True

        return needed

    @staticmethod
    def _qa_prefix(read: Refine) -> Callable[..., PromptPrefix]:
        """Step 0's prompt up to the context: the QA template's (the query's own synthesizer's)."""

        def build_prefix(query: str, synth: Refine = read) -> PromptPrefix:
            parts = li.synthesizer_parts(synth)
            return template_prefix(parts.llm, parts.text_qa_template)(query)

        return build_prefix

    @staticmethod
    def _refine_prefix(read: Refine, pieces: Callable[..., list[str]], i: int) -> Callable[..., Any]:
        """Step ``i``'s prompt up to the existing answer, if it refines the ``i``-th piece (the loop's
        guess before any answer is known; a miss only wastes the warm prefill); SKIPPED where the
        loop has fewer pieces, whose step is skipped too."""

        def build_prefix(query: str, nodes: list[NodeWithScore], synth: Refine = read) -> PromptPrefix | Any:
            known = pieces(query, nodes, synth) if nodes else []
            if i >= len(known):
                return SKIPPED
            parts = li.synthesizer_parts(synth)
            template = parts.refine_template.partial_format(query_str=query, context_msg=known[i])
            return PromptPrefix(render(parts.llm, template, existing_answer=CONTEXT_MARK), CONTEXT_MARK)

        return build_prefix

    @staticmethod
    def _finish(read: Refine, pieces: Callable[..., list[str]], count: int) -> Callable[..., Any]:
        """(query, nodes, answers) -> the Response: the loop's answer once the steps' answers are
        sent to it, the calls it makes after them run natively (none where the steps did them all)."""

        def finish_steps(query: str, nodes: list[NodeWithScore], synth: Refine = read, **answers: Any) -> Any:
            def text_of(query: str, nodes: list[NodeWithScore], answers: list[str]) -> str:
                calls, call = replayed(synth, query, pieces(query, nodes, synth), answers)
                answer = call if calls is None else run_as_asked(_native_rest, _anative_rest, synth, calls, call)
                return answer or "Empty Response"

            made = list(takewhile(lambda answer: answer is not SKIPPED, (answers[f"answer{i}"] for i in range(count))))
            return finishing(synth, text_of)(query, nodes, made or SKIPPED)

        return finish_steps


def _texts(nodes: list[NodeWithScore]) -> list[str]:
    return [n.node.get_content(metadata_mode=MetadataMode.LLM) for n in nodes]


REFINE_STEPS: tuple[RefineStepsRecogniser, ...] = (RefineStepsRecogniser(CompactAndRefine, "compact"),
                                                   RefineStepsRecogniser(Refine, "refine"))
