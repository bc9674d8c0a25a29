"""From a primitive to its engine request and back, by its op's rule.

The graph scheduler finds every primitive's rule once (``rule_for``); for each query the rule
turns the primitive's input values into the typed request its engine gets (``request_for``) and
reads the node's value out of the answer (``value_of``). The rules of local work (prompt, parse,
fuse, call: the callable pool) are here; each engine kind's registry entry brings the rules of the
ops its engines serve (embed, search, prefill, decode), so a new kind brings its ops' rules with it.
"""

from __future__ import annotations

from typing import Any, Mapping

from teola.optimizer.ir import Node, Op
from teola.runtime.errors import TeolaRuntimeError
from teola.runtime.registry import ENGINE_KINDS
from teola.runtime.requests import CallRequest, EngineRequest, OpRule, ParseRequest

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
