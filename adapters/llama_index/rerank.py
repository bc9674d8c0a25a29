"""The LLMRerank family: one LLM call per batch of candidates, and LLMRerank's own join."""

from __future__ import annotations

from typing import Any, Callable

from llama_index.core.postprocessor import LLMRerank
from llama_index.core.schema import NodeWithScore, TextNode

from teola.adapters.llama_index import compat as li
from teola.adapters.llama_index.models import llm_for, llm_why_not
from teola.adapters.llama_index.reading import AppReading, Recogniser, render
from teola.adapters.llama_index.spans import rerank_spans
from teola.optimizer.ir import ModuleKind, Node, Ref, Source
from teola.optimizer.ops import FnArgs, GenerateArgs, PrefixSpec
from teola.optimizer.values import CONTEXT_MARK, SKIPPED, Prompt, PromptPrefix


class LLMRerankRecogniser(Recogniser):
    """LLMRerank as one LLM call per batch of candidates (LlamaIndex runs them one after another;
    their data are independent) and a join that parses, sorts and cuts as LLMRerank does. Its
    candidates must be bounded (``most_nodes``): the batches are fixed when the graph is."""

    family = "LLMRerank"

    def accepts(self, component: Any) -> bool:
        return type(component) is LLMRerank

    def why_not(self, component: Any) -> str | None:
        return llm_why_not(component.llm)

    def read(self, reading: AppReading, rerank: LLMRerank, name: str, nodes: Ref, most_nodes: int) -> Ref:
        """The batches' LLM calls (each reads its slice of the candidates) and the join."""
        size = rerank.choice_batch_size
        bound = llm_for(reading, rerank.llm)
        query = reading.query
        join_inputs: dict[str, Source] = {"query": query, "nodes": nodes}
        last = (nodes.node,)
        batches = [(f"{name}.batch{b}", Ref(nodes.node, nodes.output, (start, start + size)))
                   for b, start in enumerate(range(0, most_nodes, size))]
        for b, (batch, candidates) in enumerate(batches):
            reading.graph.add(Node(batch, ModuleKind.GENERATE, {"query": query, "nodes": candidates},
                                   ("text",), GenerateArgs(bound.engine, bound.sampling, _prompt_fn(rerank),
                                                           PrefixSpec(_prefix_fn(rerank), ("query",))), after=last))
            join_inputs[f"answer{b}"] = Ref(batch, "text")
            last = (batch,)
        reading.graph.add(Node(name, ModuleKind.POSTPROCESS, join_inputs, ("nodes",),
                               FnArgs(_join_fn(rerank), "LLMRerank join", pure=True,
                                      runs_on_skipped=tuple(f"answer{b}" for b in range(len(batches)))), after=last))
        rerank_spans(reading, rerank, name, nodes, batches)
        return Ref(name, "nodes")


def _prompt_fn(rerank: LLMRerank) -> Callable[..., Prompt | Any]:
    """(query, one batch of candidates) -> the choice-select prompt LLMRerank sends for it."""

    def build_prompt(query: str, nodes: list[NodeWithScore]) -> Prompt | Any:
        if not nodes:
            return SKIPPED
        kwargs = li.rerank_kwargs(rerank, [n.node for n in nodes], query)
        return render(rerank.llm, rerank.choice_select_prompt, **kwargs)

    return build_prompt


def _prefix_fn(rerank: LLMRerank) -> Callable[[str], PromptPrefix]:
    """query -> the choice-select prompt up to where the candidates go."""

    def build_prefix(query: str) -> PromptPrefix:
        kwargs = li.rerank_kwargs(rerank, [TextNode(text=CONTEXT_MARK)], query)
        return PromptPrefix(render(rerank.llm, rerank.choice_select_prompt, **kwargs), CONTEXT_MARK)

    return build_prefix


def _join_fn(rerank: LLMRerank) -> Callable[..., list[NodeWithScore]]:
    """Each batch's answer parsed against its candidates, then sorted and cut to top_n, as LLMRerank does."""

    def join(query: str, nodes: list[NodeWithScore], **answers: Any) -> list[NodeWithScore]:
        if not nodes:
            return []
        results: list[NodeWithScore] = []
        for b, batch in enumerate(li.rerank_batches(rerank, nodes)):
            raw = li.parse_output(rerank.llm, answers[f"answer{b}"])
            results.extend(li.rerank_choices(rerank, raw, batch))
        return sorted(results, key=lambda x: x.score or 0.0, reverse=True)[: rerank.top_n]

    return join


LLM_RERANK = LLMRerankRecogniser()
POSTPROCESSORS: tuple[Recogniser, ...] = (LLM_RERANK,)
