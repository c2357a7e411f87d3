"""Where each recipe site role sits in the layer stack of every family.

A recipe (``knowledge/recipes/*.toml``) names its dropout sites by role (``attention-output``,
``ffn-inner``, ``conv`` ...; see :data:`advisor.schema.SiteRole`). :func:`role_positions` turns a role
into the gaps of the stack built by :mod:`advisor.stack`: position ``p`` is the gap between
``ops[p - 1]`` and ``ops[p]``. A role the stack has no place for gives no positions (for example
``embedding`` in a family without embeddings), and the plan says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from advisor.plan import Op
from advisor.stack import op_tags


@dataclass(frozen=True)
class Gap:
    """One side-by-side pair of operations: kinds (``any``: every kind) and an optional tag on each side."""

    after: str
    before: str
    after_tag: str | None = None
    before_tag: str | None = None


#: Roles that sit on a structural path rather than between two operations: the site is attached to
#: the gap before the operation it modifies (weight drop: before each recurrent layer, on its weights).
STRUCTURAL_ROLES = frozenset({"weight-drop"})

ROLE_GAPS: dict[str, tuple[Gap, ...]] = {
    "embedding-dropout": (Gap("input", "embedding"),),
    "embedding": (Gap("any", "any", after_tag="embed-out"),),
    "attention-weights": (Gap("attention-weights", "attention", after_tag="attn"),),
    "attention-output": (Gap("attention", "residual-add", after_tag="attn"),),
    "ffn-inner": (Gap("activation", "linear", after_tag="ffn", before_tag="ffn-out"),),
    "ffn-output": (Gap("linear", "residual-add", after_tag="ffn-out"),),
    "drop-path": (
        Gap("attention", "residual-add", after_tag="attn"),
        Gap("linear", "residual-add", after_tag="ffn-out"),
        Gap("any", "residual-add", before_tag="branch"),
    ),
    "fc": (
        Gap("flatten", "linear", before_tag="head"),
        Gap("activation", "linear", after_tag="head", before_tag="head"),
    ),
    "conv": (Gap("activation", "any", after_tag="conv"),),
    "block-mid": (Gap("activation", "conv", after_tag="branch-mid"),),
    "rnn-input": (Gap("input", "rnn-layer"), Gap("embedding", "rnn-layer")),
    "rnn-between": (Gap("rnn-layer", "rnn-layer"),),
    "rnn-output": (Gap("rnn-layer", "output"),),
    "weight-drop": (Gap("any", "rnn-layer"),),
    "hidden": (Gap("activation", "any", after_tag="hidden"),),
    "graph-input": (
        Gap("any", "linear", before_tag="gat"),
        Gap("any", "graph-conv", before_tag="gcn"),
        Gap("any", "output", before_tag="gcn"),  # the last GCN layer is the classifier
    ),
    "graph-attention": (Gap("attention-weights", "any", after_tag="gat"),),
    "graph-features": (Gap("attention", "any", after_tag="gat"),),
}


def _matches(ops: list[Op], index: int, kind: str, tag: str | None) -> bool:
    op = ops[index]
    return (kind == "any" or op.kind == kind) and (tag is None or tag in op_tags(ops, index))


def _gap_positions(ops: list[Op], gaps: tuple[Gap, ...]) -> list[int]:
    return [
        pos
        for pos in range(1, len(ops))
        if any(
            _matches(ops, pos - 1, g.after, g.after_tag) and _matches(ops, pos, g.before, g.before_tag) for g in gaps
        )
    ]


def role_positions(role: str, ops: list[Op]) -> list[int]:
    """The gaps of ``ops`` where a recipe site with this role goes, top to bottom.

    Roles whose place depends on the family (``input``, ``final``, ``head``) are worked out from the
    stack: ``input`` is the network input of families that do not start with an embedding; ``final`` is
    the output of each stack (after a pre-norm final LayerNorm, or the last block) before the head,
    the LM head or the decoder; ``head`` is the gap before the last Linear (the output layer).
    """
    if role == "input":
        if len(ops) > 1 and ops[0].kind == "input" and ops[1].kind not in ("embedding",):
            return [1]
        return []
    if role == "final":
        return _final_positions(ops)
    if role == "head":
        return [p for p in range(1, len(ops)) if ops[p].kind == "output" and "gcn" not in ops[p].tags]
    gaps = ROLE_GAPS.get(role)
    if gaps is None:
        return []
    positions = _gap_positions(ops, gaps)
    return positions[:1] if role == "rnn-input" else positions


def _final_positions(ops: list[Op]) -> list[int]:
    """The output of each stack: after a final LayerNorm, else the gap before the head (or the target embedding)."""
    finals = [p + 1 for p, op in enumerate(ops[:-1]) if op.kind == "layernorm" and "final" in op.tags]
    if finals:
        return finals
    head_kinds = ("global-pool", "flatten", "output")
    if any({"gcn", "gat"} & set(op.tags) for op in ops):
        return []  # a graph network's last layer is its classifier: there is no stack output before a head
    for p in range(1, len(ops)):
        if ops[p].kind in head_kinds and ops[p - 1].kind not in ("input", "embedding", "positional-encoding"):
            before_head = [p]
            # an encoder-decoder without final norms: the encoder's output meets the target embedding
            enc_out = [
                q
                for q in range(1, p)
                if ops[q].kind == "embedding" and "decoder" in ops[q].tags and ops[q - 1].kind != "input"
            ]
            return enc_out + before_head
    return []
