"""From a primitive to its engine request and back: one rule per op, in one place.

The graph scheduler hands every primitive's input values to ``request_for``, sends the typed
request it gets to the node's engine, and reads the node's value out of the answer with
``value_of``. Item-wise ops (embed, search, prefill, decode) send one item, or with ``batch`` each
item of their list input, and answer with one value or the list.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from teola.optimizer.ir import Node, Op
from teola.runtime.requests import (CallRequest, EmbedRequest, EngineRequest, GenerateRequest, ParseRequest, Priority,
                                    SearchRequest, TokenizeRequest, WarmPrefixRequest)

Args = Mapping[str, Any]


def _items(node: Node, value: Any) -> tuple:
    return tuple(value) if node.batched else (value,)


def _embed(node: Node, args: Args, **envelope: Any) -> EngineRequest:
    return EmbedRequest(_items(node, args["text"]), **envelope)


def _search(node: Node, args: Args, **envelope: Any) -> EngineRequest:
    return SearchRequest(_items(node, args["vector"]), node.args.top_k, **envelope)


def _prefill(node: Node, args: Args, **envelope: Any) -> EngineRequest:
    if node.meta.warm:
        return WarmPrefixRequest(args["prompt"], **envelope)
    return TokenizeRequest(_items(node, args["prompt"]), **envelope)


def _decode(node: Node, args: Args, **envelope: Any) -> EngineRequest:
    return GenerateRequest(_items(node, args["tokens"]), node.args.sampling, **envelope)


def _prompt(node: Node, args: Args, **envelope: Any) -> EngineRequest:
    return CallRequest(node.args.build, args, **envelope)


def _parse(node: Node, args: Args, **envelope: Any) -> EngineRequest:
    return ParseRequest(node.args.parse, args["text"], node.meta.items, **envelope)


def _call(node: Node, args: Args, **envelope: Any) -> EngineRequest:
    return CallRequest(node.args.fn, args, per_item=node.batched, **envelope)


REQUESTS: Mapping[Op, Callable[..., EngineRequest]] = {
    Op.EMBED: _embed, Op.SEARCH: _search, Op.PREFILL: _prefill, Op.DECODE: _decode,
    Op.PROMPT: _prompt, Op.PARSE: _parse, Op.FUSE: _call, Op.CALL: _call,
}
_ITEM_WISE = {Op.EMBED, Op.SEARCH, Op.DECODE}


def request_for(node: Node, args: Args, request_id: str, priority: Priority) -> EngineRequest:
    """The engine request that runs ``node`` on its input values ``args``."""
    return REQUESTS[node.op](node, args, id=request_id, priority=priority)


def value_of(node: Node, result: Any) -> Any:
    """The node's value in its engine's answer to ``request_for``: the item's result, or the list."""
    item_wise = node.op in _ITEM_WISE or (node.op is Op.PREFILL and not node.meta.warm)
    return (list(result) if node.batched else result[0]) if item_wise else result
