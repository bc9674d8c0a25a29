"""From a primitive to its engine request and back, by its op's rule.

The graph scheduler hands every primitive's input values to ``request_for``, sends the typed
request it gets to the node's engine, and reads the node's value out of the answer with
``value_of``. The rules of local work (prompt, parse, fuse, call: the callable pool) are here;
each engine kind's registry entry brings the rules of the ops its engines serve (embed, search,
prefill, decode), so a new kind of engine brings its ops' rules with it.
"""

from __future__ import annotations

from typing import Any, Mapping

from teola.optimizer.ir import Node, Op
from teola.runtime.errors import TeolaRuntimeError
from teola.runtime.registry import ENGINE_KINDS
from teola.runtime.requests import CallRequest, EngineRequest, OpRule, ParseRequest, Priority

Args = Mapping[str, Any]


def _never(node: Node) -> bool:
    return False


def _prompt(node: Node, args: Args, **envelope: Any) -> EngineRequest:
    return CallRequest(node.args.build, args, **envelope)


def _parse(node: Node, args: Args, **envelope: Any) -> EngineRequest:
    return ParseRequest(node.args.parse, args["text"], node.meta.items, **envelope)


def _call(node: Node, args: Args, **envelope: Any) -> EngineRequest:
    return CallRequest(node.args.fn, args, per_item=node.batched, **envelope)


LOCAL_RULES: Mapping[Op, OpRule] = {
    Op.PROMPT: OpRule(_prompt, _never), Op.PARSE: OpRule(_parse, _never),
    Op.FUSE: OpRule(_call, _never), Op.CALL: OpRule(_call, _never),
}


def rule_for(node: Node) -> OpRule:
    """The rule that sends ``node``: a local op's, or its engine kind's for its op."""
    rule = LOCAL_RULES.get(node.op)
    if rule is None:
        entry = ENGINE_KINDS.get(node.engine.kind)
        rule = entry.rules.get(node.op) if entry is not None else None
    if rule is None:
        raise TeolaRuntimeError(f"no {node.engine.kind.value} engine serves {node.op.value} primitives ({node.name}); "
                                "register the engine kind with a rule for that op")
    return rule


def request_for(node: Node, args: Args, request_id: str, priority: Priority) -> EngineRequest:
    """The engine request that runs ``node`` on its input values ``args``."""
    return rule_for(node).request(node, args, id=request_id, priority=priority)


def value_of(node: Node, result: Any) -> Any:
    """The node's value in its engine's answer to ``request_for``: the item's result, or the list."""
    if rule_for(node).item_wise(node):
        return list(result) if node.batched else result[0]
    return result
