"""Typed engine requests: what engine schedulers are asked to do, by graphs and model classes alike.

An engine scheduler never sees an IR node. The graph scheduler turns each primitive into one of
these (``teola.runtime.dispatch``), and the framework model classes backed by Teola's engines send
the very same ones, so both paths batch together. Every request carries an ``id`` (unique among
requests in flight; the LLM engine names its vLLM requests after it) and a ``priority`` (lower is
served first). Requests that work item by item (embed, search, tokenize, generate) hold a tuple of
items and are answered with one result per item, in order. An ``OpRule`` says how a primitive of
one op becomes a request: the rules of the local ops are in ``dispatch``, those of engine ops in
their engine kind's registry entry.
"""

from __future__ import annotations

import abc
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from teola.optimizer.ir import Node
from teola.optimizer.values import Prompt, PromptPrefix, Sampling

# (query priority, rank): lower sorts first; the runtime's scheduling policy ranks each primitive
# (by default minus its distance from the query's outputs: the most work still to follow goes first).
Priority = tuple[int, int]

_ids = itertools.count()


def new_request_id(prefix: str = "teola") -> str:
    """A process-unique request id."""
    return f"{prefix}-{next(_ids)}"


@dataclass(frozen=True)
class EngineRequest:
    """Base of every request: its id and priority."""

    id: str = field(default_factory=new_request_id, kw_only=True)
    priority: Priority = field(default=(0, 0), kw_only=True)


@dataclass(frozen=True)
class BatchRequest(EngineRequest, abc.ABC):
    """A request a batching engine answers item by item: ``items()`` are what its batches hold."""

    @abc.abstractmethod
    def items(self) -> list[Any]:
        """The engine's requests, one per item."""


@dataclass(frozen=True)
class EmbedRequest(BatchRequest):
    """The vectors of ``texts``."""

    texts: tuple[str, ...]

    def items(self) -> list[str]:
        return list(self.texts)


@dataclass(frozen=True)
class SearchRequest(BatchRequest):
    """The ``top_k`` best hits ``[(id, score), ...]`` of each of ``vectors``."""

    vectors: tuple[Sequence[float], ...]
    top_k: int

    def items(self) -> list[tuple[Sequence[float], int]]:
        return [(vector, self.top_k) for vector in self.vectors]


@dataclass(frozen=True)
class TokenizeRequest(EngineRequest):
    """The token IDs of each of ``prompts``, as the LLM engine will see them."""

    prompts: tuple[Prompt, ...]


@dataclass(frozen=True)
class WarmPrefixRequest(EngineRequest):
    """Send ``prefix``'s tokens ahead so their KV is cached when the full prompt comes; its token IDs."""

    prefix: PromptPrefix


@dataclass(frozen=True)
class GenerateRequest(EngineRequest):
    """The text generated from each of ``token_ids`` under ``sampling`` (streamed: exactly one): what
    the engine's ``TokenizeRequest`` gave, token IDs (or, on a server that does not tokenize, the
    ``Prompt`` itself)."""

    token_ids: tuple[list[int] | Prompt, ...]
    sampling: Sampling


@dataclass(frozen=True)
class CallRequest(EngineRequest):
    """``fn(**kwargs)`` on the callable pool; with ``per_item``, once per item of the list kwargs."""

    fn: Callable[..., Any]
    kwargs: Mapping[str, Any]
    per_item: bool = False


@dataclass(frozen=True)
class ParseRequest(EngineRequest):
    """Items ``[start, stop)`` (or all) that ``parse`` finds in ``text``, a string or a stream still filling."""

    parse: Callable[[str], list]
    text: Any
    items: tuple[int, int] | None = None


def _always(node: Node) -> bool:
    return True


@dataclass(frozen=True)
class OpRule:
    """How a primitive of one op is sent to its engine: ``request(node, args, id=, priority=)`` is the
    request its input values make; ``item_wise(node)``: the answer holds one result per item, and
    the node's value is that result (or, with ``batch``, the list)."""

    request: Callable[..., EngineRequest]
    item_wise: Callable[[Node], bool] = _always

    def request_for(self, node: Node, args: Mapping[str, Any], request_id: str, priority: Priority) -> EngineRequest:
        """The engine request that runs ``node`` on its input values ``args``."""
        return self.request(node, args, id=request_id, priority=priority)

    def value_of(self, node: Node, result: Any) -> Any:
        """The node's value in its engine's answer: the item's result, or the list (or the answer itself)."""
        if self.item_wise(node):
            return list(result) if node.batched else result[0]
        return result


def items_of(node: Node, value: Any) -> tuple:
    """A primitive's input as request items: the value, or with ``batch`` each item of it."""
    return tuple(value) if node.batched else (value,)
