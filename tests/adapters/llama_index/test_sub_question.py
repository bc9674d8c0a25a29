"""Reading a SubQuestionQueryEngine (pure graph logic: slots of gated tools, the generator, the pairs)."""

import logging

from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import SubQuestionQueryEngine
from llama_index.core.question_gen import LLMQuestionGenerator
from llama_index.core.question_gen.types import SubQuestion
from llama_index.core.response import Response
from llama_index.core.schema import TextNode
from llama_index.core.tools import QueryEngineTool

from teola.adapters.llama_index import compat as li
from teola.adapters.llama_index import read_query_engine
from teola.adapters.llama_index.sub_question import MOST_LOWERED, _asked, _gate, _pair
from teola.optimizer.ir import ModuleKind, Ref
from teola.optimizer.lowering import lower
from teola.optimizer.values import SKIPPED, Failed


def _engine(llm) -> SubQuestionQueryEngine:
    index = VectorStoreIndex([TextNode(text="a"), TextNode(text="b")], embed_model=MockEmbedding(embed_dim=8))
    tools = [QueryEngineTool.from_defaults(index.as_query_engine(llm=llm), name=name, description=name)
             for name in ("statements", "types")]
    return SubQuestionQueryEngine.from_defaults(tools, question_gen=LLMQuestionGenerator.from_defaults(llm=llm), llm=llm)


def test_each_slot_reads_every_tool_behind_a_gate_and_the_generator_call_is_lowered(served_llm):
    reading = read_query_engine(_engine(served_llm))
    graph = reading.graph
    assert reading.fallbacks == []
    assert graph["generate.predict"].op is ModuleKind.GENERATE
    assert graph["questions"].inputs == {"found": Ref("generate", "result")}
    for k in range(MOST_LOWERED):
        for j in (0, 1):
            assert graph[f"sub{k}/tool{j}/retrieve"].inputs["query"] == Ref(f"sub{k}/tool{j}", "question")
        pair = graph[f"sub{k}.pair"]
        assert pair.args.catches == pair.args.runs_on_skipped == ("tool0", "tool1")
        assert graph["synthesize"].inputs[f"pair{k}"] == Ref(f"sub{k}.pair", "pair")
    assert graph["synthesize"].args.runs_on_skipped == tuple(f"pair{k}" for k in range(MOST_LOWERED))
    lower(graph).lint()
    reading = read_query_engine(_engine(MockLLM()))
    assert reading.fallbacks[0].startswith("LLMQuestionGenerator runs unoptimized, as one call: its LLM MockLLM")
    assert reading.graph["sub0/tool0/retrieve"].op is ModuleKind.RETRIEVE  # the tools still lowered


def test_a_slot_answers_as_query_subq_does_and_a_failure_is_logged_and_dropped(caplog):
    parts = li.sub_question_parts(_engine(MockLLM()))
    asked = SubQuestion(sub_question="What does pass do?", tool_name="statements")
    assert _asked(parts, 1, [asked], ["red"]) == {"sub_question": SKIPPED, "color": SKIPPED}  # fewer came
    assert _gate("statements", asked) == "What does pass do?" and _gate("types", asked) is SKIPPED
    answered = _pair(parts, asked, "red", tool0=Response("Nothing.", source_nodes=[]), tool1=SKIPPED)
    assert answered["error"] is None and answered["pair"].answer == "Nothing." and answered["pair"].sub_q == asked
    with caplog.at_level(logging.WARNING):
        failed = _pair(parts, asked, "red", tool0=Failed(ValueError("boom")), tool1=SKIPPED)
        unknown = _pair(parts, SubQuestion(sub_question="q", tool_name="nope"), "red", tool0=SKIPPED, tool1=SKIPPED)
    assert failed["pair"] is None and isinstance(failed["error"], ValueError)
    assert unknown["pair"] is None and isinstance(unknown["error"], KeyError)
    assert [r.getMessage() for r in caplog.records] == ["[statements] Failed to run What does pass do?",
                                                       "[nope] Failed to run q"]
