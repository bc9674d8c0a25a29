"""The SubQuestionQueryEngine family: sub-questions answered side by side.

LlamaIndex's SubQuestionQueryEngine asks its question generator for sub-questions (each naming the
tool, a query engine, that answers it), answers them (one after another in a ``query`` unless
``use_async=True``), and synthesizes the answer over the sub-answers. The sub-questions are
independent: Teola answers them all at once, so their retrieval and LLM calls batch on the shared
engines. The generator, each sub-question (as the engine's own ``_query_subq`` runs it: its
callback event, its tool's query, a failure logged and dropped) and the final synthesis run as
calls, each reporting its own spans in place; the tools' pipelines are not lowered into primitives
yet (that needs a sub-engine read under a name, with its query from another module).
"""

from __future__ import annotations

from typing import Any

from llama_index.core.query_engine import SubQuestionQueryEngine
from llama_index.core.schema import QueryBundle
from llama_index.core.utils import get_color_mapping, print_text

from teola.adapters.llama_index import compat as li
from teola.adapters.llama_index.as_asked import run_as_asked
from teola.adapters.llama_index.reading import AppReading, Recogniser
from teola.optimizer.ir import ModuleKind, Node, Ref
from teola.optimizer.ops import FnArgs


class SubQuestionRecogniser(Recogniser):
    """A ``SubQuestionQueryEngine``: generate -> every sub-question at once -> synthesize."""

    family = "SubQuestionQueryEngine"

    def accepts(self, component: Any) -> bool:
        return type(component) is SubQuestionQueryEngine

    def why_not(self, component: Any) -> str | None:
        return None

    def read(self, reading: AppReading, engine: SubQuestionQueryEngine) -> Ref:
        """Modules ``questions`` (the generator's sub-questions and their print colors), ``answers``
        (one call per sub-question, all at once) and ``synthesize``, in the span being read."""
        parts = li.sub_question_parts(engine)
        query = reading.query

        def questions(query: str) -> dict[str, list]:
            found = run_as_asked(parts.question_gen.generate, parts.question_gen.agenerate, parts.metadatas,
                                 QueryBundle(query))
            colors = get_color_mapping([str(i) for i in range(len(found))])
            if parts.verbose:
                print_text(f"Generated {len(found)} sub questions.\n")
            return {"sub_questions": list(found), "colors": [colors[str(i)] for i in range(len(found))]}

        def answer(sub_question: Any, color: str) -> Any:
            return run_as_asked(parts.answer, parts.aanswer, sub_question, color=color)

        def synthesize(query: str, pairs: list[Any]) -> Any:
            answered = [pair for pair in pairs if pair]  # a sub-question that failed is dropped, as natively
            return run_as_asked(parts.synthesizer.synthesize, parts.synthesizer.asynthesize, query=QueryBundle(query),
                                nodes=[parts.node_of(pair) for pair in answered],
                                additional_source_nodes=[node for pair in answered for node in pair.sources])

        graph = reading.graph
        graph.add(Node("questions", ModuleKind.CALL, {"query": query}, ("sub_questions", "colors"),
                       FnArgs(questions, "generate sub-questions"), region=reading.region))
        graph.add(Node("answers", ModuleKind.CALL, {"sub_question": Ref("questions", "sub_questions"),
                                                     "color": Ref("questions", "colors")}, ("pairs",),
                       FnArgs(answer, "answer sub-questions", batch=True), region=reading.region))
        graph.add(Node("synthesize", ModuleKind.CALL, {"query": query, "pairs": Ref("answers", "pairs")}, ("response",),
                       FnArgs(synthesize, "synthesize over sub-answers"), region=reading.region))
        return Ref("synthesize", "response")


SUB_QUESTION = SubQuestionRecogniser()
