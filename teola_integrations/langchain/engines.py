"""LangChain chat model, LLM, embeddings and vector store classes backed by Teola's shared engines.

A native LangChain chain built with these runs on the very engines its optimized twin runs on, so
a latency comparison measures the execution strategy and nothing else. The optimizer recognises
them by what they carry (``teola_engine``, ``teola_sampling``, ``to_documents``), not by name.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any, AsyncIterator, Iterable, Iterator, Sequence

import numpy as np
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel, LLM
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, GenerationChunk
from langchain_core.vectorstores import VectorStore
from pydantic import Field, PrivateAttr

from teola.adapters.langchain import to_prompt
from teola.optimizer.ops import EngineId, EngineKind
from teola.optimizer.values import Prompt, Sampling
from teola.runtime.engines.vector_index import FaissIndexEngine
from teola.runtime.models import DEFAULT_EMBEDDING, DEFAULT_LLM
from teola.runtime.registry import EngineSpec
from teola.runtime.runtime import Runtime, get_runtime
from teola.runtime.clients import EmbeddingClient, IndexClient, LLMClient


class _TeolaLanguageModel:
    """What the chat model and the LLM share: the engine, the sampling, text and streamed text."""

    model: str
    max_tokens: int
    temperature: float
    max_model_len: int
    _client: LLMClient

    def _start_engine(self, runtime: Runtime | None) -> None:
        runtime = runtime or get_runtime()
        self._client = LLMClient(runtime, runtime.llm(self.model, max_model_len=self.max_model_len))

    @property
    def teola_engine(self) -> EngineId:
        """The shared engine this model runs on."""
        return self._client.id

    @property
    def teola_sampling(self) -> Sampling:
        """The decoding settings of this model (greedy by default)."""
        return Sampling(max_tokens=self.max_tokens, temperature=self.temperature)

    def _sampling(self, stop: Sequence[str] | None) -> Sampling:
        return Sampling(max_tokens=self.max_tokens, temperature=self.temperature, stop=tuple(stop or ()))

    def _text(self, prompt: Prompt, stop: Sequence[str] | None) -> str:
        return self._client.text(prompt, self._sampling(stop))

    async def _atext(self, prompt: Prompt, stop: Sequence[str] | None) -> str:
        return await self._client.atext(prompt, self._sampling(stop))

    def _deltas(self, prompt: Prompt, stop: Sequence[str] | None) -> Iterator[str]:
        return self._client.deltas(prompt, self._sampling(stop))

    def _adeltas(self, prompt: Prompt, stop: Sequence[str] | None) -> AsyncIterator[str]:
        return self._client.adeltas(prompt, self._sampling(stop))


class TeolaChatModel(_TeolaLanguageModel, BaseChatModel):
    """A LangChain chat model served by Teola's shared vLLM engine (greedy by default).

    ``model`` is ``"smollm2-135m-instruct"`` (the packaged CPU default), a local model folder or a
    hub id. Messages are rendered with the model's own chat template.
    """

    model: str = Field(default=DEFAULT_LLM, description="model name, folder or hub id")
    max_tokens: int = Field(default=128, gt=0, description="the most tokens one answer may have")
    temperature: float = Field(default=0.0, ge=0.0, description="0 is greedy decoding")
    max_model_len: int = Field(default=2048, gt=0, description="context window the engine is started with")
    _engine: Any = PrivateAttr()

    def __init__(self, runtime: Runtime | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._start_engine(runtime)

    @property
    def _llm_type(self) -> str:
        return "teola-chat"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        text = self._text(to_prompt(messages), stop)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        text = await self._atext(to_prompt(messages), stop)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        for delta in self._deltas(to_prompt(messages), stop):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=delta))
            if run_manager:
                run_manager.on_llm_new_token(delta, chunk=chunk)
            yield chunk

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        async for delta in self._adeltas(to_prompt(messages), stop):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=delta))
            if run_manager:
                await run_manager.on_llm_new_token(delta, chunk=chunk)
            yield chunk


class TeolaLLM(_TeolaLanguageModel, LLM):
    """A LangChain text-completion LLM served by Teola's shared vLLM engine (raw text, no chat template)."""

    model: str = Field(default=DEFAULT_LLM, description="model name, folder or hub id")
    max_tokens: int = Field(default=128, gt=0, description="the most tokens one answer may have")
    temperature: float = Field(default=0.0, ge=0.0, description="0 is greedy decoding")
    max_model_len: int = Field(default=2048, gt=0, description="context window the engine is started with")
    _engine: Any = PrivateAttr()

    def __init__(self, runtime: Runtime | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._start_engine(runtime)

    @property
    def _llm_type(self) -> str:
        return "teola-llm"

    def _call(self, prompt: str, stop: list[str] | None = None,
              run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> str:
        return self._text(Prompt(text=prompt), stop)

    async def _acall(self, prompt: str, stop: list[str] | None = None,
                     run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> str:
        return await self._atext(Prompt(text=prompt), stop)

    def _stream(self, prompt: str, stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[GenerationChunk]:
        for delta in self._deltas(Prompt(text=prompt), stop):
            if run_manager:
                run_manager.on_llm_new_token(delta)
            yield GenerationChunk(text=delta)


class TeolaEmbeddings(Embeddings):
    """LangChain embeddings served by Teola's shared embedding engine (batched across queries)."""

    def __init__(self, model: str = DEFAULT_EMBEDDING, runtime: Runtime | None = None) -> None:
        self.model = model
        runtime = runtime or get_runtime()
        self.client = EmbeddingClient(runtime, runtime.embedding(model))

    @property
    def teola_engine(self) -> EngineId:
        """The shared engine this model runs on."""
        return self.client.id

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text."""
        return self.client.embed(texts)

    def embed_query(self, text: str) -> list[float]:
        """The vector of one query."""
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, from any event loop."""
        return await self.client.aembed(texts)

    async def aembed_query(self, text: str) -> list[float]:
        """The vector of one query, from any event loop."""
        return (await self.aembed_documents([text]))[0]


class TeolaVectorStore(VectorStore):
    """Documents searched by cosine similarity on Teola's shared faiss engine.

    Built once (``from_documents`` / ``from_texts``); its retriever (``as_retriever()``) is what
    LangChain users put in a chain, and what Teola lowers into embed and search primitives.
    """

    def __init__(self, embedding: TeolaEmbeddings, documents: Sequence[Document], vectors: Sequence[Sequence[float]]) -> None:
        if not documents:
            raise ValueError("TeolaVectorStore needs at least one document")
        self._embedding = embedding
        self._documents = {doc.id: doc for doc in documents}
        ids, matrix = list(self._documents), np.asarray(vectors, dtype=np.float32)
        spec = EngineSpec(EngineKind.VECTOR_INDEX, f"langchain:{uuid.uuid4().hex[:12]}",
                          build=partial(FaissIndexEngine.from_vectors, ids, matrix))
        self._index = IndexClient(embedding.client, embedding.client.runtime.engine(spec, holder=self))

    @property
    def embeddings(self) -> TeolaEmbeddings:
        return self._embedding

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings, metadatas: list[dict] | None = None,
                   *, ids: list[str] | None = None, **kwargs: Any) -> "TeolaVectorStore":
        """Embed ``texts`` with ``embedding`` (a ``TeolaEmbeddings``) and index them."""
        if not isinstance(embedding, TeolaEmbeddings):
            raise TypeError(f"TeolaVectorStore runs on Teola's engines: pass a TeolaEmbeddings, got {type(embedding).__name__}")
        ids = ids or [uuid.uuid4().hex for _ in texts]
        metadatas = metadatas or [{} for _ in texts]
        documents = [Document(id=i, page_content=t, metadata=m) for i, t, m in zip(ids, texts, metadatas, strict=True)]
        return cls(embedding, documents, embedding.embed_documents(list(texts)))

    @classmethod
    def from_documents(cls, documents: list[Document], embedding: Embeddings, **kwargs: Any) -> "TeolaVectorStore":
        """Embed and index ``documents`` (each keeps its id, or gets a new one)."""
        return cls.from_texts([d.page_content for d in documents], embedding, [dict(d.metadata) for d in documents],
                              ids=[d.id or uuid.uuid4().hex for d in documents])

    def add_texts(self, texts: Iterable[str], metadatas: list[dict] | None = None, **kwargs: Any) -> list[str]:
        raise NotImplementedError("a TeolaVectorStore is built once: make a new one with from_documents() "
                                  "over all the documents (and optimize the chain again)")

    def to_documents(self, hits: list[tuple[str, float]]) -> list[Document]:
        """Search hits (id, score), best first, as copies of the stored documents."""
        return [self._documents[i].model_copy() for i, _ in hits]

    @property
    def index_engine(self) -> EngineId:
        """The shared vector index engine these documents are searched on."""
        return self._index.id

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The ``k`` documents most similar to ``query``."""
        if kwargs:
            raise TypeError(f"TeolaVectorStore.similarity_search takes only k, got {sorted(kwargs)}")
        return self.to_documents(self._index.search(query, k))

    async def asimilarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The ``k`` documents most similar to ``query``, from any event loop."""
        if kwargs:
            raise TypeError(f"TeolaVectorStore.asimilarity_search takes only k, got {sorted(kwargs)}")
        return self.to_documents(await self._index.asearch(query, k))
