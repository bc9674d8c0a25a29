"""The SubQuestionQueryEngine family: sub-questions answered side by side, their tools as primitives.

LlamaIndex's SubQuestionQueryEngine asks its question generator for sub-questions (each naming the
tool, a query engine, that answers it), answers them (one after another in a ``query`` unless
``use_async=True``), and synthesizes the answer over the sub-answers. The sub-questions are
independent: Teola answers them all at once. The first ``MOST_LOWERED`` are slots in the graph:
each slot reads every tool's query engine (``read_inner``, under the prefix ``sub{k}/tool{j}/``)
behind a gate that lets the sub-question through only to the tool it names, so the one that answers
runs as primitives (its retrieval and LLM calls on the shared engines, batched with the other
slots') and the others do not run. A slot keeps what the engine's own ``_query_subq`` does around
the tool's query: its ``SUB_QUESTION`` callback event, the printed question and answer, and a
failure (or a tool name it does not have) logged and dropped, through an error-as-value edge
(``FnArgs.catches``). Sub-questions past the slots run as the engine runs them, as one call each.
An LLMQuestionGenerator's call is lowered (``predict``); any other generator, and the final synthesis
(over the sub-answers, with their sources), run as calls, reporting their own spans in place.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, Mapping

from llama_index.core.query_engine import SubQuestionQueryEngine
from llama_index.core.query_engine.sub_question_query_engine import SubQuestionAnswerPair
from llama_index.core.question_gen import LLMQuestionGenerator
from llama_index.core.question_gen.prompts import build_tools_text
from llama_index.core.schema import QueryBundle
from llama_index.core.utils import get_color_mapping, print_text

from teola.adapters.llama_index import compat as li
from teola.adapters.llama_index.as_asked import run_as_asked
from teola.adapters.llama_index.models import llm_why_not
from teola.adapters.llama_index.predict import read_as_call, read_predict_parse
from teola.adapters.llama_index.reading import AppReading, ReadInner, Recogniser
from teola.adapters.llama_index.spans import sub_question_region
from teola.optimizer.ir import ModuleKind, Node, Ref, Source
from teola.optimizer.ops import FnArgs
from teola.optimizer.values import SKIPPED, Failed

MOST_LOWERED = 4  # sub-questions whose tools run as primitives; LlamaIndex's generator writes 2-3 for most queries
sub_question_log = logging.getLogger(SubQuestionQueryEngine.__module__)  # where the engine logs a failed one


class SubQuestionRecogniser(Recogniser):
    """A ``SubQuestionQueryEngine``: generate -> every sub-question at once -> synthesize."""

    family = "SubQuestionQueryEngine"

    def accepts(self, component: Any) -> bool:
        return type(component) is SubQuestionQueryEngine

    def why_not(self, component: Any) -> str | None:
        return None

    def read(self, reading: AppReading, engine: SubQuestionQueryEngine, read_inner: ReadInner) -> Ref:
        """Modules ``questions`` (the generator's sub-questions and their print colors), per slot ``k``
        ``sub{k}`` (its sub-question), its tools behind gates and ``sub{k}.pair`` (the question and
        answer), ``rest`` (the sub-questions past the slots) and ``synthesize``, in the span being read."""
        parts = li.sub_question_parts(engine)
        graph, query = reading.graph, reading.query

        def questions(found: list[Any]) -> dict[str, list]:
            colors = get_color_mapping([str(i) for i in range(len(found))])
            if parts.verbose:
                print_text(f"Generated {len(found)} sub questions.\n")
            return {"sub_questions": list(found), "colors": [colors[str(i)] for i in range(len(found))]}

        generated = {"sub_questions": Ref("questions", "sub_questions"), "colors": Ref("questions", "colors")}
        graph.add(Node("questions", ModuleKind.CALL, {"found": _read_generator(reading, parts)}, tuple(generated),
                       FnArgs(questions, "sub-questions and their colors"), region=reading.region))
        pairs = {f"pair{k}": _read_slot(reading, engine, parts, k, generated, read_inner) for k in range(MOST_LOWERED)}

        def rest(sub_questions: list[Any], colors: list[str]) -> list[Any]:
            return [run_as_asked(parts.answer, parts.aanswer, sub_question, color=color)
                    for sub_question, color in zip(sub_questions[MOST_LOWERED:], colors[MOST_LOWERED:])]

        graph.add(Node("rest", ModuleKind.CALL, dict(generated), ("pairs",),
                       FnArgs(rest, "answer the sub-questions past the slots"), region=reading.region))

        def synthesize(query: str, rest: list[Any], **slots: Any) -> Any:
            every = [slots[f"pair{k}"] for k in range(MOST_LOWERED)] + rest
            answered = [pair for pair in every if pair is not SKIPPED and pair]  # a failed one is dropped, as natively
            return run_as_asked(parts.synthesizer.synthesize, parts.synthesizer.asynthesize, query=QueryBundle(query),
                                nodes=[parts.node_of(pair) for pair in answered],
                                additional_source_nodes=[node for pair in answered for node in pair.sources])

        graph.add(Node("synthesize", ModuleKind.CALL, {"query": query, "rest": Ref("rest", "pairs"), **pairs},
                       ("response",), FnArgs(synthesize, "synthesize over sub-answers", runs_on_skipped=tuple(pairs)),
                       region=reading.region))
        return Ref("synthesize", "response")


def _read_generator(reading: AppReading, parts: li.SubQuestionParts) -> Ref:
    """The sub-questions the engine's question generator writes: an LLMQuestionGenerator's call lowered
    (``generate.predict``, then its parse), any other generator as one call (``generate``)."""
    generator, why = parts.question_gen, _generator_why_not(parts.question_gen)
    if why:
        return read_as_call(reading, "generate", generator, why, generator.generate, generator.agenerate,
                            parts.metadatas)
    llm, prompt = li.question_generator_parts(generator)
    tools = build_tools_text(parts.metadatas)
    return read_predict_parse(reading, "generate", generator, "generate", lambda bundle: ((parts.metadatas, bundle), {}),
                              llm, prompt, lambda query: {"tools_str": tools, "query_str": query},
                              lambda parsed: parsed.parsed_output)


def _generator_why_not(generator: Any) -> str | None:
    """Why ``generator``'s LLM call cannot be lowered (None: it can)."""
    if type(generator) is not LLMQuestionGenerator:
        return "Teola lowers LLMQuestionGenerator (an OpenAI question generator calls tools) so far"
    return llm_why_not(li.question_generator_parts(generator)[0])


def _read_slot(reading: AppReading, engine: SubQuestionQueryEngine, parts: li.SubQuestionParts, k: int,
               generated: Mapping[str, Source], read_inner: ReadInner) -> Ref:
    """Slot ``k``: its sub-question (SKIPPED where fewer came), inside its SUB_QUESTION callback event
    each tool behind a gate, then the question-answer pair; returns the pair (None where it failed)."""
    graph, slot = reading.graph, f"sub{k}"
    graph.add(Node(slot, ModuleKind.CALL, dict(generated), ("sub_question", "color"),
                   FnArgs(partial(_asked, parts, k), f"sub-question {k}"), region=reading.region))  # it may print
    question = Ref(slot, "sub_question")
    responses: dict[str, Source] = {}
    with reading.inside(sub_question_region(reading, engine, question, Ref(f"{slot}.pair", "pair"),
                                            Ref(f"{slot}.pair", "error"))):
        for j, (name, tool) in enumerate(parts.engines.items()):
            gate = f"{slot}/tool{j}"
            graph.add(Node(gate, ModuleKind.CALL, {"sub_question": question}, ("question",),
                           FnArgs(partial(_gate, name), f"sub-question {k} for tool {name!r}", pure=True)))
            responses[f"tool{j}"] = read_inner(reading, tool, Ref(gate, "question"), f"{gate}/")
        graph.add(Node(f"{slot}.pair", ModuleKind.CALL, {"sub_question": question, "color": Ref(slot, "color"),
                                                         **responses}, ("pair", "error"),
                       FnArgs(partial(_pair, parts), f"sub-question {k} answered", runs_on_skipped=tuple(responses),
                              catches=tuple(responses)), region=reading.region))
    return Ref(f"{slot}.pair", "pair")


def _asked(parts: li.SubQuestionParts, k: int, sub_questions: list[Any], colors: list[str]) -> dict[str, Any]:
    """The ``k``-th sub-question and its color (SKIPPED where fewer came), its question printed where the
    engine is verbose and has its tool, as ``_query_subq`` prints it."""
    if k >= len(sub_questions):
        return {"sub_question": SKIPPED, "color": SKIPPED}
    sub_question, color = sub_questions[k], colors[k]
    if parts.verbose and sub_question.tool_name in parts.engines:
        print_text(f"[{sub_question.tool_name}] Q: {sub_question.sub_question}\n", color=color)
    return {"sub_question": sub_question, "color": color}


def _gate(tool: str, sub_question: Any) -> Any:
    """The sub-question's text, for ``tool`` where it names that tool; else SKIPPED (the tool does not run)."""
    return sub_question.sub_question if sub_question.tool_name == tool else SKIPPED


def _pair(parts: li.SubQuestionParts, sub_question: Any, color: str, **responses: Any) -> dict[str, Any]:
    """The question-answer pair ``_query_subq`` returns (its answer printed where the engine is verbose);
    where the tool failed, or the engine has no tool of that name, the error logged and the pair None."""
    names = list(parts.engines)
    if sub_question.tool_name not in parts.engines:
        error: BaseException = KeyError(sub_question.tool_name)
    else:
        response = responses[f"tool{names.index(sub_question.tool_name)}"]
        if not isinstance(response, Failed):
            answer = str(response)
            if parts.verbose:
                print_text(f"[{sub_question.tool_name}] A: {answer}\n", color=color)
            return {"pair": SubQuestionAnswerPair(sub_q=sub_question, answer=answer, sources=response.source_nodes),
                    "error": None}
        error = response.error
    sub_question_log.warning(f"[{sub_question.tool_name}] Failed to run {sub_question.sub_question}", exc_info=error)
    return {"pair": None, "error": error}


SUB_QUESTION = SubQuestionRecogniser()
