"""The demo RAG app, built the way a LlamaIndex user builds it, on Teola-backed engines."""

from __future__ import annotations

from typing import Literal

from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import TextNode

from teola_integrations.data import Chunk, load_corpus
from teola_integrations.llama_index import TeolaEmbedding, TeolaLLM


def build_index(chunks: list[Chunk], embed_model: TeolaEmbedding,
                store: Literal["simple", "faiss"] = "simple") -> VectorStoreIndex:
    """A VectorStoreIndex over the chunks, in the default in-memory store or a faiss store."""
    nodes = [TextNode(id_=c.id, text=c.text, metadata={"topic": c.topic}) for c in chunks]
    if store == "faiss":
        import faiss
        from llama_index.vector_stores.faiss import FaissVectorStore

        dim = len(embed_model.get_text_embedding("dimension probe"))
        storage = StorageContext.from_defaults(vector_store=FaissVectorStore(faiss_index=faiss.IndexFlatIP(dim)))
        return VectorStoreIndex(nodes, embed_model=embed_model, storage_context=storage, show_progress=True)
    return VectorStoreIndex(nodes, embed_model=embed_model, show_progress=True)


def build_rag_app(top_k: int = 3, max_tokens: int = 64, store: Literal["simple", "faiss"] = "simple",
                  corpus_limit: int | None = None) -> RetrieverQueryEngine:
    """Naive RAG over the demo corpus: retrieve top-k, compact synthesis with the chat LLM."""
    llm = TeolaLLM(max_tokens=max_tokens)
    embed_model = TeolaEmbedding()
    index = build_index(load_corpus(corpus_limit), embed_model, store)
    return index.as_query_engine(llm=llm, similarity_top_k=top_k)
