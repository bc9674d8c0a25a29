"""The run tree of a traced chain's structure (sequences, parallels, assign, passthrough, itemgetter,
steps run as-is), as LangChain reports it natively (graph logic: fakes stand in for engines)."""

import asyncio
import contextvars
from operator import itemgetter

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough, patch_config
from langchain_core.tracers.context import collect_runs

from teola.adapters.langchain.compat import get_callback_manager_for_config
from teola.adapters.langchain.runs import ModelRun
from teola.adapters.langchain.steps import StepFrame
from teola_integrations.langchain import optimize
from teola_integrations.tools.run_trees import langchain_run_tree


def _upper(d: dict) -> str:
    return d["topic"].upper()


def _join(d: dict) -> str:
    return f"{d['first']}|{d['second']}|{d['n']}"


CHAINS = {
    "assign at the root": lambda: RunnablePassthrough.assign(n=lambda d: len(d["topic"])) | RunnableParallel(
        first=itemgetter("topic") | RunnableLambda(str.title), second=RunnableLambda(_upper),
        n=itemgetter("n"), keep=RunnablePassthrough()) | RunnableLambda(_join),
    "a parallel at the root": lambda: RunnableParallel(
        first=ChatPromptTemplate.from_template("Say {topic}") | FakeListChatModel(responses=["alpha"]) | StrOutputParser(),
        second=RunnablePassthrough.assign(n=lambda d: 1) | itemgetter("n")),
}


@pytest.mark.parametrize("name", CHAINS)
def test_steps_report_the_runs_they_report_natively(name):
    config = {"tags": ["t"], "metadata": {"m": 1}}
    trees = []
    for chain, ask in ((CHAINS[name](), "invoke"), (optimize(CHAINS[name]()), "invoke"),
                       (optimize(CHAINS[name]()), "ainvoke")):
        with collect_runs() as collector:
            out = chain.invoke({"topic": "cats"}, config) if ask == "invoke" else \
                asyncio.run(chain.ainvoke({"topic": "cats"}, config))
        trees.append((out, langchain_run_tree(collector.traced_runs[0])))
    native, teola, teola_async = trees
    assert len(native[1]) >= 6
    assert teola == native and teola_async == native


def test_in_a_streamed_invocation_a_model_teola_did_not_stream_reports_its_text_as_one_piece_then_the_last():
    tokens = []

    class Tokens(BaseCallbackHandler):
        def on_llm_new_token(self, token, **kwargs):
            tokens.append((token, kwargs["chunk"].message.chunk_position))

    model = FakeListChatModel(responses=["alpha"])
    observer = ModelRun(model, "seq:step:1", "model", lambda values: values["value"])
    with collect_runs() as collector:
        config = {"callbacks": [Tokens()]}
        chain = get_callback_manager_for_config(config).on_chain_start(None, {"topic": "cats"}, name="chain")
        frame = StepFrame(patch_config(config, callbacks=chain.get_child()), chain, False, contextvars.copy_context(),
                          streamed=True)

        async def report():
            handle = await observer.start(None, {"value": "Say cats"}, {"frame": frame})
            await observer.end(handle, {"text": "alpha"})

        asyncio.run(report())
        chain.on_chain_end({"output": "alpha"})
    assert tokens == [("alpha", None), ("", "last")]
    [run] = collector.traced_runs[0].child_runs
    [[generation]] = run.outputs["generations"]
    assert run.tags == ["seq:step:1"] and generation["type"] == "ChatGenerationChunk"
    assert generation["text"] == "alpha"
