"""A small IAM evaluator for the template's own policies (moto does not enforce IAM).

Enough of the policy language for what infra/cloudformation/voicetone.yaml uses: Allow/Deny,
Action/Resource wildcards, and the String*/Arn*/Bool condition operators with ``...IfExists``.
An explicit Deny wins; otherwise some Allow must match action, resource and every condition.
CloudFormation intrinsics (Ref, Fn::Sub, Fn::GetAtt, Fn::If) are resolved first with `resolve`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_NO_VALUE = object()


@dataclass
class StackContext:
    """Values the intrinsics resolve to: parameters, pseudo parameters, GetAtt/Ref of resources."""

    params: dict[str, Any]
    refs: dict[str, str] = field(default_factory=dict)  # logical id -> Ref value
    atts: dict[str, str] = field(default_factory=dict)  # "Logical.Attr" -> value
    conditions: dict[str, bool] = field(default_factory=dict)
    region: str = "us-east-1"
    account: str = "123456789012"
    partition: str = "aws"
    stack: str = "voicetone"

    def ref(self, name: str) -> Any:
        pseudo = {"AWS::Region": self.region, "AWS::AccountId": self.account, "AWS::Partition": self.partition,
                  "AWS::StackName": self.stack, "AWS::NoValue": _NO_VALUE}  # fmt: skip
        for table in (pseudo, self.params, self.refs):
            if name in table:
                return table[name]
        raise KeyError(f"unresolved Ref {name!r}")


def resolve(node: Any, ctx: StackContext) -> Any:
    """`node` with every intrinsic function replaced by its value."""
    if isinstance(node, list):
        out = [resolve(n, ctx) for n in node]
        return [n for n in out if n is not _NO_VALUE]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (key, arg), = node.items()
        if key == "Ref":
            return ctx.ref(arg)
        if key == "Fn::GetAtt":
            logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
            return ctx.atts[f"{logical}.{attr}"]
        if key == "Fn::Sub":
            text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], resolve(arg[1], ctx))
            return re.sub(r"\$\{([^}!]+)\}", lambda m: _sub_var(m.group(1), extra, ctx), text)
        if key == "Fn::If":
            name, yes, no = arg
            return resolve(yes if ctx.conditions[name] else no, ctx)
    out = {k: resolve(v, ctx) for k, v in node.items()}
    return {k: v for k, v in out.items() if v is not _NO_VALUE}


def _sub_var(name: str, extra: Mapping[str, Any], ctx: StackContext) -> str:
    if name in extra:
        return str(extra[name])
    if "." in name:
        return str(ctx.atts[name])
    return str(ctx.ref(name))


def _listify(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _glob(pattern: str, value: str, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def _condition_holds(operator: str, key: str, expected: Any, context: Mapping[str, str]) -> bool:
    if_exists = operator.endswith("IfExists")
    op = operator.removesuffix("IfExists")
    if key not in context:
        return if_exists
    actual = context[key]
    values = [str(v) for v in _listify(expected)]
    if op in ("StringEquals", "ArnEquals"):
        return actual in values
    if op in ("StringLike", "ArnLike"):
        return any(_glob(v, actual) for v in values)
    if op == "StringNotEquals":
        return actual not in values
    if op == "Bool":
        return actual.lower() in (v.lower() for v in values)
    raise NotImplementedError(f"condition operator {operator} is not modelled here")


def statement_matches(statement: Mapping[str, Any], action: str, resource: str, context: Mapping[str, str]) -> bool:
    """True when `statement` applies to this request (its Effect is not looked at)."""
    if "NotAction" in statement or "NotResource" in statement:
        raise NotImplementedError("NotAction/NotResource are not modelled (the template does not use them)")
    if not any(_glob(a, action, ignore_case=True) for a in _listify(statement["Action"])):
        return False
    if not any(_glob(r, resource) for r in _listify(statement["Resource"])):
        return False
    for operator, block in (statement.get("Condition") or {}).items():
        for key, expected in block.items():
            if not _condition_holds(operator, key, expected, context):
                return False
    return True


def is_allowed(statements: Sequence[Mapping[str, Any]], action: str, resource: str,
               context: Mapping[str, str] | None = None) -> bool:  # fmt: skip
    """IAM's answer for one request against identity-policy `statements` (explicit deny wins)."""
    context = context or {}
    matching = [s for s in statements if statement_matches(s, action, resource, context)]
    if any(s["Effect"] == "Deny" for s in matching):
        return False
    return any(s["Effect"] == "Allow" for s in matching)
