"""Streamed answers take the shape the native chain streams (pure logic: the deltas are given)."""

import asyncio

from langchain_core.messages import AIMessageChunk
from langchain_core.output_parsers import CommaSeparatedListOutputParser, JsonOutputParser
from langchain_core.tracers.context import collect_runs

from teola.adapters.langchain import FinalGeneration
from teola_integrations.langchain.answer_stream import answer_achunks, answer_chunks

DELTAS = ['{"items": ["al', 'pha", "be', 'ta"]}']


def test_a_json_answer_streams_its_partial_objects_with_the_config_given():
    final = FinalGeneration("answer.llm", chat=True, parser=JsonOutputParser())
    with collect_runs() as collector:
        chunks = list(answer_chunks(final, iter(DELTAS), {"run_name": "answer parser"}))
    assert chunks == list(JsonOutputParser().transform(iter(AIMessageChunk(content=d) for d in DELTAS)))
    assert chunks[-1] == {"items": ["alpha", "beta"]} and len(chunks) > 1
    assert [run.name for run in collector.traced_runs] == ["answer parser"]


def test_a_list_answer_streams_item_by_item_and_an_llm_without_parser_streams_text():
    async def streamed(final, deltas):
        async def source():
            for delta in deltas:
                yield delta

        return [chunk async for chunk in answer_achunks(final, source())]

    listed = FinalGeneration("answer.llm", chat=False, parser=CommaSeparatedListOutputParser())
    assert asyncio.run(streamed(listed, ["alpha, be", "ta, gam", "ma"])) == [["alpha"], ["beta"], ["gamma"]]
    plain = FinalGeneration("answer.llm", chat=False, parser=None)
    assert asyncio.run(streamed(plain, ["one ", "two"])) == ["one ", "two"]
