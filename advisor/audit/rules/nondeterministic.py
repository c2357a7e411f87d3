"""nondeterministic-eval-output (DRP302): randomness that survives ``model.eval()``.

Evidence is structural (random numbers drawn, or a dropout module still in training mode, in the eval
forward) or numeric (two eval forwards on the same input differ, located at the innermost module whose
output differed while its input did not). Modes the earlier rules explain are not repeated.

Must flag::

    def forward(self, x):                                   # a drop-path that forgets self.training
        mask = torch.rand(x.shape[0], 1) < 1 - self.p
        return x * mask / (1 - self.p)

Must not flag::

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        ...
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch

from advisor.audit.rules.functional_eval import FIX_LINK

if TYPE_CHECKING:
    from advisor.audit.analysis import Analysis

SLUG = "nondeterministic-eval-output"
ID = "DRP302"
SEVERITY = "error"
TITLE = "Eval output must be deterministic"

_EXPLAINED_BY = ("functional-dropout-ignores-eval", "unregistered-dropout", "frozen-graph-dropout")


def check(ctx: Analysis) -> None:
    flagged = {f.module for f in ctx.findings if f.slug in _EXPLAINED_BY}

    def explained(path: str) -> bool:
        if "[" in path:  # a module kept in a plain list or dict: unregistered-dropout explains it
            return True
        return any(f == path or f.startswith(path + ".") or path == "" for f in flagged) if flagged else False

    # Structural evidence: random numbers drawn, or a dropout module still in training mode, in eval.
    structural: dict[str, list[str]] = {}
    for dc in ctx.evals.drop_calls:
        if dc.kind == "random":
            structural.setdefault(dc.owner, []).append(dc.func)
        elif dc.in_dropout_module and dc.training and (dc.p or 0) > 0:
            structural.setdefault(dc.owner, []).append(f"{dc.func}(training=True)")

    candidates: dict[str, str] = {}  # path -> evidence
    for path, ops in structural.items():
        candidates[path] = f"{', '.join(sorted(set(ops)))} ran in the eval-mode forward"
    if ctx.eval2 is not None and ctx.evals.fingerprints and ctx.eval2.fingerprints:
        sources = minimal_sources(ctx.evals.fingerprints, ctx.eval2.fingerprints)
        compared = "two eval-mode forwards on the same input gave different outputs"
        if sources == ["<output>"]:  # only the model output was kept (large activations)
            if not candidates and not flagged:
                candidates[""] = compared
        else:
            for path in sources:
                if path in candidates:
                    candidates[path] = f"{compared}; {candidates[path]}"
                elif not any(c.startswith(path + ".") or (path == "" and c) for c in candidates):
                    candidates[path] = compared
    for path, evidence in sorted(candidates.items()):
        if explained(path):
            continue
        acc = next((s for s in ctx.sites if s.module == path), None)
        glob = path or "<root>"
        msg = (
            f"{ctx.cls_of(path)} '{path or '<root>'}' is random in eval mode: {evidence}. "
            "Randomness that survives model.eval() makes predictions and metrics irreproducible "
            "(a custom drop-path or weight-drop that ignores self.training is the usual cause)."
        )
        fix = "return the input unchanged when not self.training (timm: drop_path(x, p, self.training)); " + (
            FIX_LINK.format(glob=glob, slug=SLUG)
        )
        ctx.finding(SLUG, path, msg, fix, site=acc)


Fingerprints = dict[tuple[str, int], tuple[list[torch.Tensor], list[torch.Tensor]]]


def minimal_sources(a: Fingerprints, b: Fingerprints) -> list[str]:
    """Modules whose outputs differ between two eval passes although their inputs were equal, innermost only."""
    sources: set[str] = set()
    for key, (ins_a, outs_a) in a.items():
        if key not in b:
            continue
        ins_b, outs_b = b[key]
        if not same(outs_a, outs_b) and same(ins_a, ins_b):
            sources.add(key[0])
    minimal = [
        s
        for s in sources
        if not any(o != s and ((s == "" and o != "<output>") or o.startswith(s + ".")) for o in sources)
    ]
    return sorted(minimal)


def same(xs: Iterable[torch.Tensor], ys: Iterable[torch.Tensor]) -> bool:
    xs, ys = list(xs), list(ys)
    if len(xs) != len(ys):
        return False
    for x, y in zip(xs, ys, strict=True):
        if x.shape != y.shape:
            return False
        if not torch.allclose(x, y, rtol=1e-5, atol=1e-6, equal_nan=True):
            return False
    return True
