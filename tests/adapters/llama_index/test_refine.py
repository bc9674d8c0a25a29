"""``refine_calls`` makes exactly the LLM calls LlamaIndex's own refine loop makes (real synthesizers and
prompt helpers; a scripted LLM stands in for the model: what is tested is the loop's logic)."""

from typing import Any

import pytest
from llama_index.core.indices.prompt_helper import PromptHelper
from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
from llama_index.core.response_synthesizers import CompactAndRefine, Refine
from llama_index.core.schema import NodeWithScore, TextNode

from teola.adapters.llama_index import compat as li
from teola.adapters.llama_index.refine import refine_calls, refine_pieces

CONTEXT_WINDOW = 2000


class ScriptedLLM(CustomLLM):
    """Answers each call with the next of ``answers`` and records every prompt it is sent."""

    answers: list[str]
    is_chat: bool = False
    prompts: list[str] = []

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=CONTEXT_WINDOW, num_output=100, is_chat_model=self.is_chat)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.prompts.append(prompt)
        return CompletionResponse(text=self.answers[(len(self.prompts) - 1) % len(self.answers)])

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        raise NotImplementedError


def _text(words: int, seed: int) -> str:
    return " ".join(f"word{seed}x{i}" for i in range(words)) + "."


def _ours(synth: Refine, llm: ScriptedLLM, query: str, nodes: list[NodeWithScore]) -> tuple[list[str], str | None]:
    """The prompts ``refine_calls`` asks for, sent the same scripted answers, and its final answer;
    each call says whether it is the last, before its answer is known."""
    calls, prompts, lasts = refine_calls(synth, query, refine_pieces(synth, query, nodes)), [], []
    try:
        call = next(calls)
        while True:
            messages, text = li.render(llm, call.template, **call.variables)
            prompts.append(text if messages is None else llm.messages_to_prompt(messages))
            lasts.append(call.last)
            call = calls.send(li.parse_output(llm, llm.answers[(len(prompts) - 1) % len(llm.answers)]))
    except StopIteration as ended:
        assert lasts == [False] * (len(lasts) - 1) + [True]
        return prompts, ended.value


@pytest.mark.parametrize("case", ["one piece per node", "a node split to fit", "split beside a long answer",
                                  "empty answers keep the last", "compact packs the nodes", "chat templates"])
def test_refine_calls_are_the_native_loops_calls(case):
    words, answers, kind, chat = 60, ["first answer", "better answer", "best answer"], Refine, False
    if case == "a node split to fit":
        words = 1500
    elif case == "split beside a long answer":  # pieces fit beside a short answer, not beside this one
        words, answers = 900, [_text(150, 9)]
    elif case == "empty answers keep the last":
        answers = ["", "an answer", "", "another"]
    elif case == "compact packs the nodes":
        kind = CompactAndRefine
    elif case == "chat templates":
        chat = True
    llm = ScriptedLLM(answers=answers, is_chat=chat)
    synth = kind(llm=llm, prompt_helper=PromptHelper(context_window=CONTEXT_WINDOW, num_output=100))
    nodes = [NodeWithScore(node=TextNode(text=_text(words, k)), score=1.0) for k in range(4)]
    query = "What do the words say?"
    native = synth.get_response(query, [n.node.get_content() for n in nodes])
    native_prompts = list(llm.prompts)
    llm.prompts.clear()
    prompts, answer = _ours(synth, llm, query, nodes)
    assert prompts == native_prompts
    assert (answer or "Empty Response") == native
    if case == "split beside a long answer":
        assert len(prompts) > len(refine_pieces(synth, query, nodes))  # the loop split a piece on its way
    if case == "compact packs the nodes":
        assert len(prompts) < len(nodes)
