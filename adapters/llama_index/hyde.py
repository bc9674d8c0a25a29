"""The HyDE family: a TransformQueryEngine with HyDEQueryTransform around a readable query engine."""

from __future__ import annotations

from typing import Any

from llama_index.core.indices.query.query_transform import HyDEQueryTransform
from llama_index.core.query_engine import RetrieverQueryEngine, TransformQueryEngine
from llama_index.core.schema import QueryBundle

from teola.adapters.llama_index import compat as li
from teola.adapters.llama_index.models import llm_for, llm_why_not
from teola.adapters.llama_index.reading import AppReading, Recogniser, recognise, render
from teola.adapters.llama_index.retrievers import VECTOR
from teola.adapters.llama_index.spans import hyde_spans
from teola.optimizer.ir import ModuleKind, Node, Ref
from teola.optimizer.ops import FnArgs, GenerateArgs


class HyDERecogniser(Recogniser):
    """The LLM writes a hypothetical answer document; it (and the query, if included) are what the
    inner engine's vector retriever embeds, as HyDEQueryTransform's query bundle asks."""

    family = "HyDE (TransformQueryEngine with HyDEQueryTransform)"

    def accepts(self, component: Any) -> bool:
        return type(component) is TransformQueryEngine and type(li.transform_parts(component)[0]) is HyDEQueryTransform

    def why_not(self, component: Any) -> str | None:
        transform, inner = li.transform_parts(component)
        why = llm_why_not(li.hyde_parts(transform).llm)
        if why:
            return why
        if type(inner) is not RetrieverQueryEngine:
            return f"it wraps a {type(inner).__name__}, not a RetrieverQueryEngine"
        return recognise((VECTOR,), inner.retriever)[1] or None

    def read(self, reading: AppReading, engine: TransformQueryEngine) -> tuple[tuple[Ref, int], Any]:
        """The hypothetical document's LLM call and embedding texts (with its spans: the transform's
        ``_run`` > the LLM's ``predict``); returns the texts, how many there may be, and the inner engine."""
        transform, inner = li.transform_parts(engine)
        parts = li.hyde_parts(transform)
        llm = parts.llm
        bound = llm_for(reading, llm)
        query = reading.query
        reading.graph.add(Node("hyde.generate", ModuleKind.GENERATE, {"query": query}, ("text",),
                               GenerateArgs(bound.engine, bound.sampling,
                                            lambda query: render(llm, parts.prompt, context_str=query))))

        def embedding_texts(query: str, text: str) -> list[str]:
            document = li.parse_output(llm, text)
            return [document, *QueryBundle(query).embedding_strs] if parts.include_original else [document]

        reading.graph.add(Node("hyde", ModuleKind.CALL, {"query": query, "text": Ref("hyde.generate", "text")},
                               ("texts",), FnArgs(embedding_texts, "HyDE embedding texts", pure=True)))
        hyde_spans(reading, transform, llm, parts.prompt, Ref("hyde", "texts"), Ref("hyde.generate", "text"))
        return (Ref("hyde", "texts"), 2 if parts.include_original else 1), inner  # the document (and the query)


HYDE = HyDERecogniser()
