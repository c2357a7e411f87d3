"""The audit rules: from two traced forwards (train, eval) to dropout sites and findings.

Every rule belongs to a knowledge-base recommendation (its ``[audit]`` table names the slug and the
default severity), so ``dropout-advisor explain <slug>`` explains any finding. The table below is the
fallback used only while an entry is missing from the knowledge base.
"""

from __future__ import annotations

import functools
import inspect
import linecache
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from advisor.audit import trace as tr
from advisor.audit.report import Finding, Location, Site
from advisor.errors import KnowledgeError


@dataclass(frozen=True)
class RuleInfo:
    slug: str
    id: str
    severity: str
    title: str
    summary: str = ""
    citations: tuple[str, ...] = ()
    from_kb: bool = False


# slug -> (recommendation ID, default severity, title)
BUILTIN: dict[str, tuple[str, str, str]] = {
    "functional-dropout-ignores-eval": ("DRP301", "error", "Functional dropout must follow the module mode"),
    "nondeterministic-eval-output": ("DRP302", "error", "Eval output must be deterministic"),
    "dropout-before-batchnorm": ("DRP101", "warning", "No dropout directly before BatchNorm"),
    "dropout-after-output": ("DRP303", "warning", "No dropout after the output layer"),
    "rnn-dropout-single-layer": ("DRP304", "warning", "RNN dropout= needs num_layers >= 2"),
    "channel-dropout-wrong-rank": ("DRP305", "warning", "Channel-wise dropout on the wrong rank"),
    "inplace-dropout-hazard": ("DRP306", "warning", "In-place dropout after an op autograd needs"),
    "rate-out-of-range": ("DRP204", "error", "Valid drop probabilities are in [0, 1)"),
    "rate-suspicious": ("DRP203", "warning", "Drop probability vs keep probability"),
    "dropout-never-called": ("DRP307", "warning", "A dropout module that never runs"),
    "elementwise-dropout-on-feature-maps": ("DRP005", "info", "Channel-wise dropout for conv feature maps"),
}
SLUGS = tuple(BUILTIN)


@functools.lru_cache(maxsize=1)
def _kb_rules() -> tuple[dict[str, RuleInfo], str | None]:
    """Rule metadata from the knowledge base, and a note when some of it had to come from BUILTIN."""
    try:
        from advisor.knowledge import default_kb

        recs = default_kb().by_slug()
    except KnowledgeError as exc:
        first = exc.message.splitlines()[0]
        infos = {s: RuleInfo(s, *BUILTIN[s]) for s in SLUGS}
        return infos, f"knowledge base not loaded ({first}); rule IDs and severities are built-in defaults"
    infos = {}
    missing = []
    for slug in SLUGS:
        rec = recs.get(slug)
        if rec is None or rec.audit is None:
            missing.append(slug)
            infos[slug] = RuleInfo(slug, *BUILTIN[slug])
            continue
        infos[slug] = RuleInfo(
            slug, rec.id, rec.audit.severity, rec.title, rec.summary, tuple(rec.citations), from_kb=True
        )
    note = None
    if missing:
        note = "not yet in the knowledge base, built-in defaults used: " + ", ".join(missing)
    return infos, note


def rule_info(slug: str) -> RuleInfo:
    return _kb_rules()[0][slug]


def rules_meta() -> dict[str, dict[str, str]]:
    """Per slug: the recommendation's one-line summary and default severity (for SARIF rule descriptors)."""
    out = {}
    for slug in SLUGS:
        info = rule_info(slug)
        out[slug] = {"summary": info.summary or info.title, "severity": info.severity}
    return out


def kb_note() -> str | None:
    return _kb_rules()[1]


def resolve_rule(name: str) -> str | None:
    """A slug, a recommendation ID or '*' -> the slug (or '*'); None when unknown."""
    if name == "*" or name in BUILTIN:
        return name
    up = name.upper()
    for slug in SLUGS:
        if rule_info(slug).id == up or BUILTIN[slug][0] == up:
            return slug
    return None


# ---- source locations ---------------------------------------------------------------------------


def class_location(cls: type) -> Location | None:
    return _class_location(cls)


@functools.lru_cache(maxsize=512)
def _class_location(cls: type) -> Location | None:
    try:
        file = inspect.getsourcefile(cls)
        if file is None:
            return None
        _, line = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return None
    return Location(file=file, line=max(line, 1), symbol=cls.__qualname__)


def _is_user_class(cls: type) -> bool:
    mod = cls.__module__ or ""
    if mod.split(".")[0] in ("torch", "torchvision", "timm", "transformers", "advisor"):
        return False
    loc = class_location(cls)
    return loc is not None and not ("site-packages" in loc.file or "dist-packages" in loc.file)


# ---- the analysis -------------------------------------------------------------------------------


@dataclass
class _SiteAcc:
    key: tuple[str, ...]
    module: str
    module_class: str
    source: str
    op: str
    kind: str
    p: float | None
    mod: nn.Module | None = None
    inplace: bool = False
    train_events: list[int] = field(default_factory=list)
    eval_events: list[int] = field(default_factory=list)
    train_calls: int = 0
    eval_calls: int = 0
    drop_calls: list[tr.DropCall] = field(default_factory=list)
    call_location: tuple[str, int, str] | None = None
    first: float = math.inf
    id: str = ""


_PASS_FEATURES = {"activation", "batchnorm", "layernorm", "pool", "shape", "dropout", "add", "mul", "cat"}
_LAST_LAYER = {"linear", "conv", "matmul"}
_FIX_LINK = "if it is intended (MC dropout, the Tacotron 2 prenet), allow it: --allow '{glob}:{slug}'"


class Analysis:
    """Builds the sites and the findings of one audit."""

    def __init__(
        self,
        model: nn.Module,
        train: tr.Trace,
        evals: tr.Trace,
        eval2: tr.Trace | None,
        *,
        fallback_location: Location | None = None,
    ) -> None:
        self.model = model
        self.train = train
        self.evals = evals
        self.eval2 = eval2
        self.fallback_location = fallback_location
        self.modules = dict(model.named_modules())
        self.findings: list[Finding] = []
        self.sites: list[_SiteAcc] = []
        self._by_key: dict[tuple[str, ...], _SiteAcc] = {}
        self._call_site: dict[int, _SiteAcc] = {}

    # -- helpers --
    def cls_of(self, path: str) -> str:
        m = self.modules.get(path)
        return type(m).__name__ if m is not None else "?"

    def location(self, path: str) -> Location | None:
        """Where the nearest enclosing class written by the user is defined."""
        parts = path.split(".") if path else []
        for i in range(len(parts), -1, -1):
            m = self.modules.get(".".join(parts[:i]))
            if m is not None and _is_user_class(type(m)):
                return class_location(type(m))
        if self.fallback_location is not None:
            return self.fallback_location
        return class_location(type(self.model))

    def finding(
        self,
        slug: str,
        path: str,
        message: str,
        fix: str,
        *,
        site: _SiteAcc | None = None,
        call_location: tuple[str, int, str] | None = None,
    ) -> None:
        info = rule_info(slug)
        cl = call_location or (site.call_location if site is not None else None)
        self.findings.append(
            Finding(
                rule_id=info.id,
                slug=slug,
                severity=info.severity,
                title=info.title,
                module=path,
                module_class=self.cls_of(path),
                site=site.id if site is not None else None,
                message=message,
                fix=fix,
                citations=list(info.citations),
                location=self.location(path),
                call_location=Location(file=cl[0], line=cl[1], symbol=cl[2]) if cl else None,
            )
        )

    # -- sites --
    def _site(self, key: tuple[str, ...], **kw: Any) -> _SiteAcc:
        acc = self._by_key.get(key)
        if acc is None:
            acc = _SiteAcc(key=key, **kw)
            self._by_key[key] = acc
            self.sites.append(acc)
        return acc

    def collect_sites(self) -> None:
        for path, m in self.modules.items():
            kind = tr.dropout_like_kind(m)
            op = None
            if kind is not None:
                op = f"nn.{type(m).__name__}" if type(m).__module__.startswith("torch.") else type(m).__name__
            elif isinstance(m, nn.MultiheadAttention) and m.dropout > 0:
                kind, op = "attention-dropout", "nn.MultiheadAttention(dropout=)"
            elif isinstance(m, nn.RNNBase) and m.dropout > 0:
                kind, op = "dropout", f"nn.{type(m).__name__}(dropout=)"
            if kind is None or op is None:
                continue
            acc = self._site(
                ("module", path),
                module=path,
                module_class=type(m).__name__,
                source="module",
                op=op,
                kind=kind,
                p=tr.module_rate(m),
                mod=m,
                inplace=bool(getattr(m, "inplace", False)),
            )
            acc.train_calls = self.train.calls.get(path, 0)
            acc.eval_calls = self.evals.calls.get(path, 0)
        for trace, is_train in ((self.train, True), (self.evals, False)):
            for ev in trace.events:
                if ev.kind == "module" and ("module", ev.owner) in self._by_key:
                    acc = self._by_key[("module", ev.owner)]
                    (acc.train_events if is_train else acc.eval_events).append(ev.idx)
                    if is_train:
                        acc.first = min(acc.first, ev.idx)
            for dc in trace.drop_calls:
                self._attach(dc, trace, is_train)
        order = {path: i for i, path in enumerate(self.modules)}
        self.sites.sort(key=lambda s: (s.first, order.get(s.module, 0)))
        for i, s in enumerate(self.sites, 1):
            s.id = f"S{i}"

    def _attach(self, dc: tr.DropCall, trace: tr.Trace, is_train: bool) -> None:
        owner_key = ("module", dc.owner)
        if owner_key in self._by_key:
            # torch's own dropout module calling F.dropout, MHA's functional forward, or a user dropout class
            acc = self._by_key[owner_key]
            acc.drop_calls.append(dc)
            self._call_site[id(dc)] = acc
            if dc.p is not None and acc.p is None:
                acc.p = dc.p
            if dc.on_parameter and acc.kind == "dropout":
                acc.kind = "weight-drop"
            return
        if dc.in_dropout_module or (dc.func == "F.multi_head_attention_forward" and not (dc.p or 0) > 0):
            return
        loc = dc.location
        loc_key = f"{loc[0]}:{loc[1]}" if loc else ""
        if dc.kind == "random":
            name = dc.func.split(".")[-1]
            if name not in tr.MASK_RANDOM:
                return
            func_name = loc[2] if loc else ""
            kind = tr.dropout_like_kind_from_name(func_name) or tr.dropout_like_kind_from_name(self.cls_of(dc.owner))
            acc = self._site(
                ("random", dc.owner, loc_key),
                module=dc.owner,
                module_class=self.cls_of(dc.owner),
                source="random",
                op=f"{func_name}() [{dc.func}]" if func_name else dc.func,
                kind=kind or "dropout",
                p=None,
            )
        else:
            if (
                dc.kind == "attention-dropout"
                and not (dc.p or 0) > 0
                and ("fn", dc.owner, dc.func, loc_key) not in self._by_key
            ):
                return
            acc = self._site(
                ("fn", dc.owner, dc.func, loc_key),
                module=dc.owner,
                module_class=self.cls_of(dc.owner),
                source="function",
                op=dc.func,
                kind="weight-drop" if dc.on_parameter else dc.kind,
                p=dc.p,
                inplace=dc.inplace,
            )
            if dc.p is not None and (acc.p is None or (is_train and (dc.p or 0) > (acc.p or 0))):
                acc.p = dc.p
        acc.call_location = acc.call_location or loc
        acc.drop_calls.append(dc)
        self._call_site[id(dc)] = acc
        if is_train:
            acc.train_calls += 1
            if dc.event >= 0:
                acc.train_events.append(dc.event)
                acc.first = min(acc.first, dc.event)
        else:
            acc.eval_calls += 1
            if dc.event >= 0:
                acc.eval_events.append(dc.event)

    # -- graph walks over the train trace --
    def _forward(self, start: int, passes: Callable[[tr.Event], bool]) -> Iterator[tr.Event]:
        """Consumers reachable from ``start`` through events that ``passes`` (the first other one included)."""
        trace = self.train
        seen = {start}
        todo = [start]
        while todo:
            cur = todo.pop()
            for c in trace.consumers.get(cur, ()):
                if c in seen:
                    continue
                seen.add(c)
                ev = trace.events[c]
                yield ev
                if passes(ev):
                    todo.append(c)

    def _back(self, start: int, passing: set[str], limit: int = 16) -> Iterator[tr.Event]:
        """Producers reachable backwards from ``start`` through ops in ``passing``."""
        seen = {start}
        todo = [start]
        steps = 0
        while todo and steps < limit:
            cur = todo.pop()
            steps += 1
            for p in self.train.events[cur].producers:
                if p < 0 or p in seen:
                    continue
                seen.add(p)
                ev = self.train.events[p]
                yield ev
                if ev.op in passing:
                    todo.append(p)

    def _input_producer(self, idx: int) -> tr.Event | None:
        """The producer of an event's first input, looking through shape-only ops."""
        ev = self.train.events[idx]
        while ev.producers and ev.producers[0] >= 0:
            prev = self.train.events[ev.producers[0]]
            if prev.op != "shape":
                return prev
            ev = prev
        return None

    def describe(self, ev: tr.Event | None) -> str:
        if ev is None:
            return "-"
        where = ev.owner or "<root>"
        if ev.kind == "module":
            return f"{ev.name} {where}"
        return f"{ev.name}() in {where}"

    def _before_after(self, acc: _SiteAcc) -> tuple[str | None, str | None]:
        trace = self.train if acc.train_events else self.evals
        events = acc.train_events or acc.eval_events
        if not events:
            return None, None
        ev = trace.events[events[0]]
        before = "-"
        if ev.producers:
            p = ev.producers[0]
            before = "input" if p == -1 else "parameter" if p == -2 else self.describe(trace.events[p])
        cons = trace.consumers.get(ev.idx, [])
        if cons:
            after = self.describe(trace.events[min(cons)])
        elif ev.idx in trace.outputs:
            after = "output"
        else:
            after = "-"
        return before, after

    # -- rules --
    def run(self) -> None:
        self.collect_sites()
        self.rule_functional_eval()
        self.rule_nondeterministic()
        for acc in self.sites:
            self.rule_rates(acc)
            self.rule_never_called(acc)
            self.rule_wrong_rank(acc)
            self.rule_before_batchnorm(acc)
            self.rule_after_output(acc)
            self.rule_inplace(acc)
            self.rule_elementwise_feature_maps(acc)
        self.rule_rnn_single_layer()

    def rule_functional_eval(self) -> None:
        seen: set[tuple[str, ...]] = set()
        for dc in self.evals.drop_calls:
            if dc.in_dropout_module or dc.kind == "random" or not (dc.p or 0) > 0:
                continue
            if dc.func == "F.scaled_dot_product_attention":
                pass
            elif dc.training is not True:
                continue
            acc = self._site_of(dc)
            key = acc.key if acc is not None else (dc.owner, dc.func)
            if key in seen:
                continue
            seen.add(key)
            where = self.cls_of(dc.owner) + ".forward"
            glob = dc.owner or "<root>"
            if dc.func == "F.scaled_dot_product_attention":
                msg = (
                    f"F.scaled_dot_product_attention(dropout_p={dc.p:g}) runs in eval mode in {where}: "
                    "the function has no training flag, so attention dropout stays on after model.eval() "
                    "and predictions are random."
                )
                fix = "pass dropout_p=self.p if self.training else 0.0; " + _FIX_LINK.format(
                    glob=glob, slug="functional-dropout-ignores-eval"
                )
            else:
                msg = (
                    f"{dc.func}(p={dc.p:g}) runs with training=True in eval mode in {where}: "
                    "functional dropout does not follow model.eval(), so it stays on at inference and "
                    "predictions are random."
                )
                fix = "pass training=self.training, or use an nn.Dropout module; " + _FIX_LINK.format(
                    glob=glob, slug="functional-dropout-ignores-eval"
                )
            self.finding("functional-dropout-ignores-eval", dc.owner, msg, fix, site=acc, call_location=dc.location)

    def _site_of(self, dc: tr.DropCall) -> _SiteAcc | None:
        return self._call_site.get(id(dc))

    def rule_nondeterministic(self) -> None:
        flagged = {f.module for f in self.findings if f.slug == "functional-dropout-ignores-eval"}

        def explained(path: str) -> bool:
            return any(f == path or f.startswith(path + ".") or path == "" for f in flagged) if flagged else False

        # Structural evidence: random numbers drawn, or a dropout module still in training mode, in eval.
        structural: dict[str, list[str]] = {}
        for dc in self.evals.drop_calls:
            if dc.kind == "random":
                structural.setdefault(dc.owner, []).append(dc.func)
            elif dc.in_dropout_module and dc.training and (dc.p or 0) > 0:
                structural.setdefault(dc.owner, []).append(f"{dc.func}(training=True)")

        candidates: dict[str, str] = {}  # path -> evidence
        for path, ops in structural.items():
            candidates[path] = f"{', '.join(sorted(set(ops)))} ran in the eval-mode forward"
        if self.eval2 is not None and self.evals.fingerprints and self.eval2.fingerprints:
            sources = _minimal_sources(self.evals.fingerprints, self.eval2.fingerprints)
            compared = "two eval-mode forwards on the same input gave different outputs"
            if sources == ["<output>"]:  # only the model output was kept (large activations)
                if not candidates:
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
            acc = next((s for s in self.sites if s.module == path), None)
            glob = path or "<root>"
            msg = (
                f"{self.cls_of(path)} '{path or '<root>'}' is random in eval mode: {evidence}. "
                "Randomness that survives model.eval() makes predictions and metrics irreproducible "
                "(a custom drop-path or weight-drop that ignores self.training is the usual cause)."
            )
            fix = (
                "return the input unchanged when not self.training (timm: drop_path(x, p, self.training)); "
                + _FIX_LINK.format(glob=glob, slug="nondeterministic-eval-output")
            )
            self.finding("nondeterministic-eval-output", path, msg, fix, site=acc)

    def _name(self, acc: _SiteAcc) -> str:
        if acc.source == "module":
            return f"{acc.module_class} '{acc.module}'"
        return f"{acc.op} in '{acc.module or '<root>'}'"

    def rule_rates(self, acc: _SiteAcc) -> None:
        ps = [acc.p] if acc.p is not None else []
        ps += [dc.p for dc in acc.drop_calls if dc.p is not None and dc.kind != "random"]
        bad = [p for p in ps if math.isnan(p) or p < 0 or p >= 1]
        if bad:
            p = bad[0]
            if p == 1:
                why = (
                    "p=1 zeroes every activation in training (torch allows it silently), "
                    "so nothing reaches the next layer"
                )
            else:
                why = f"p={p:g} is outside [0, 1): torch raises ValueError at the first training forward"
            self.finding(
                "rate-out-of-range",
                acc.module,
                f"{self._name(acc)} has a drop probability of {p:g}: {why}.",
                "use a drop probability in [0, 1), e.g. 0.1-0.5; PyTorch's p is the fraction dropped",
                site=acc,
            )
            return
        keep = self._keep_named(acc)
        if keep is not None:
            self.finding(
                "rate-suspicious",
                acc.module,
                f"{self._name(acc)} takes its rate from {keep}: a keep (retain) probability passed as PyTorch's "
                "p, which is the drop probability, inverts the regularization (keep 0.8 becomes drop 0.8).",
                f"pass 1 - keep_prob{f' (here {1 - acc.p:g})' if acc.p is not None else ''}, and name it drop_prob",
                site=acc,
            )
            return
        high = [p for p in ps if p >= 0.9]
        if high and acc.kind != "attention-dropout":
            p = high[0]
            self.finding(
                "rate-suspicious",
                acc.module,
                f"{self._name(acc)} drops {p:.0%} of its input (p={p:g}): that looks like a keep probability "
                "(TF1 keep_prob, the retain p of Srivastava et al.) passed as PyTorch's drop probability.",
                f"if you meant to keep {p:.0%}, pass p={1 - p:.2g}",
                site=acc,
            )

    def _keep_named(self, acc: _SiteAcc) -> str | None:
        if acc.p is None or acc.p <= 0:
            return None
        holders: list[tuple[str, nn.Module]] = []
        if acc.mod is not None:
            holders.append((acc.module, acc.mod))
        owner = acc.module if acc.source != "module" else acc.module.rpartition(".")[0]
        if owner in self.modules and (acc.source != "module" or acc.module != ""):
            holders.append((owner, self.modules[owner]))
        for path, m in holders:
            for k, v in vars(m).items():
                if (
                    not k.startswith("_")
                    and _KEEP.search(k)
                    and isinstance(v, (int, float))
                    and not isinstance(v, bool)
                    and abs(float(v) - acc.p) < 1e-9
                ):
                    return f"the attribute {path + '.' if path else ''}{k} = {v:g}"
        if acc.call_location is not None and acc.source == "function":
            line = linecache.getline(acc.call_location[0], acc.call_location[1])
            for hit in _KEEP.finditer(line):
                if not _ONE_MINUS.search(line[: hit.start()]):
                    name = acc.call_location[0].rsplit("/", 1)[-1]
                    return f"'{hit.group(0)}' (at {name}:{acc.call_location[1]})"
        return None

    def rule_never_called(self, acc: _SiteAcc) -> None:
        if acc.source != "module" or acc.train_calls > 0:
            return
        if isinstance(acc.mod, (nn.MultiheadAttention, nn.RNNBase)):
            return
        parent = ""
        parts = acc.module.split(".")
        for i in range(len(parts) - 1, 0, -1):
            anc = ".".join(parts[:i])
            if self.train.calls.get(anc, 0) == 0 and anc in self.modules:
                parent = f" (its parent '{anc}' never ran either)"
            else:
                break
        self.finding(
            "dropout-never-called",
            acc.module,
            f"{self._name(acc)} (p={_fmt(acc.p)}) is registered but never ran in the train-mode forward{parent}: "
            "the configured rate has no effect.",
            "call it in forward (for example x = self.drop(x) before the next layer), or remove it and its "
            "config field",
            site=acc,
        )

    def rule_wrong_rank(self, acc: _SiteAcc) -> None:
        expected = {"dropout1d": (2, 3), "dropout2d": (4,), "dropout3d": (5,)}.get(acc.kind)
        if expected is None:
            return
        shapes = [dc.in_shape for dc in acc.drop_calls if dc.in_shape]
        if not shapes:
            shapes = [self.train.events[e].in_shapes[0] for e in acc.train_events if self.train.events[e].in_shapes]
        bad = next((s for s in shapes if len(s) not in expected), None)
        if bad is None:
            return
        rank = len(bad)
        shape = "(" + ", ".join(map(str, bad)) + ")"
        if acc.kind == "dropout1d":
            what = f"raises RuntimeError on {rank}-D input {shape} (it takes (N, C, L) or (C, L))"
            fix = "use nn.Dropout2d for (N, C, H, W) feature maps and nn.Dropout3d for (N, C, D, H, W)"
        elif acc.kind == "dropout2d" and rank == 3:
            what = (
                f"receives 3-D input {shape}: PyTorch warns and treats it as (N, C, L) (channel-wise 1-D dropout); "
                "the meaning of 3-D input changed between releases"
            )
            fix = "use nn.Dropout1d for (N, C, L) tensors"
        elif acc.kind == "dropout2d" and rank == 2:
            what = f"receives 2-D input {shape}: there are no channels to drop; PyTorch warns and drops elements"
            fix = "use nn.Dropout for (N, F) tensors"
        elif acc.kind == "dropout3d" and rank == 4:
            what = (
                f"receives 4-D input {shape}: it is read as one unbatched (C, D, H, W) volume, so it drops the "
                "same channels for the whole batch"
            )
            fix = "use nn.Dropout2d for (N, C, H, W) feature maps"
        else:
            what = f"receives {rank}-D input {shape}; it expects {' or '.join(f'{r}-D' for r in expected)} input"
            fix = "pick the dropout class that matches the rank: Dropout1d (N, C, L), Dropout2d (N, C, H, W), Dropout"
        self.finding("channel-dropout-wrong-rank", acc.module, f"{self._name(acc)} {what}.", fix, site=acc)

    def rule_before_batchnorm(self, acc: _SiteAcc) -> None:
        if acc.kind in ("attention-dropout", "weight-drop") or acc.source == "random":
            return
        for e in acc.train_events:
            for ev in self._forward(e, lambda ev: ev.op in ("shape", "cat")):
                if ev.op == "batchnorm":
                    self.finding(
                        "dropout-before-batchnorm",
                        acc.module,
                        f"{self._name(acc)} (p={_fmt(acc.p)}) feeds {self.describe(ev)} directly: BatchNorm's running "
                        "variance is collected with dropout on and used without it, a train/test 'variance shift' "
                        "(Li et al. 2019) that costs accuracy.",
                        "move the dropout after the BatchNorm (Linear/Conv -> BN -> activation -> Dropout), or "
                        "keep dropout only after the last BatchNorm, before the classifier",
                        site=acc,
                    )
                    return

    def rule_after_output(self, acc: _SiteAcc) -> None:
        if acc.kind in ("attention-dropout", "weight-drop") or acc.source == "random":
            return
        outputs = set(self.train.outputs)
        for e in acc.train_events:
            reaches = e in outputs or any(
                ev.idx in outputs for ev in self._forward(e, _passes_output) if _passes_output(ev)
            )
            if not reaches:
                continue
            prod = self._input_producer(e)
            if prod is None or prod.op not in _LAST_LAYER:
                continue
            self.finding(
                "dropout-after-output",
                acc.module,
                f"{self._name(acc)} (p={_fmt(acc.p)}) is applied to the model's output, after its last layer "
                f"{self.describe(prod)}: it zeroes logits during training and miscalibrates the probabilities.",
                "put the dropout before the last layer (Dropout -> Linear), never after it",
                site=acc,
            )
            return

    def rule_inplace(self, acc: _SiteAcc) -> None:
        if not (acc.inplace or any(dc.inplace for dc in acc.drop_calls if dc.kind != "random")):
            return
        for e in acc.train_events:
            prod = self._input_producer(e)
            if prod is None:
                continue
            if prod.kind == "module":
                hazard = prod.name in tr.SAVES_OUTPUT or (
                    prod.name in tr.SAVES_OUTPUT_IF_INPLACE and bool(getattr(prod.module, "inplace", False))
                )
            else:
                base = tr.normalize_name(prod.name)
                hazard = base in tr.SAVES_OUTPUT_FUNCS or (
                    base in ("leaky_relu", "elu", "celu") and bool(prod.extra.get("inplace"))
                )
            if hazard:
                self.finding(
                    "inplace-dropout-hazard",
                    acc.module,
                    f"{self._name(acc)} runs in place (inplace=True) on the output of {self.describe(prod)}, "
                    "which autograd keeps for the backward pass: loss.backward() fails with 'one of the variables "
                    "needed for gradient computation has been modified by an inplace operation'.",
                    "use inplace=False (the memory saved is one activation tensor)",
                    site=acc,
                )
                return

    def rule_elementwise_feature_maps(self, acc: _SiteAcc) -> None:
        if acc.kind != "dropout" or acc.source == "random":
            return
        for e in acc.train_events:
            ev = self.train.events[e]
            shape = next((dc.in_shape for dc in acc.drop_calls if dc.in_shape), None) or (
                ev.in_shapes[0] if ev.in_shapes else ()
            )
            if len(shape) != 4:
                continue
            if any(p.op == "conv" for p in self._back(e, _PASS_FEATURES)):
                self.finding(
                    "elementwise-dropout-on-feature-maps",
                    acc.module,
                    f"{self._name(acc)} drops single elements of a conv feature map of shape "
                    f"({', '.join(map(str, shape))}): neighbouring pixels are strongly correlated, so element-wise "
                    "dropout regularizes little; channel-wise dropout is usually what is meant.",
                    "use nn.Dropout2d (F.dropout2d) to drop whole channels",
                    site=acc,
                )
                return

    def rule_rnn_single_layer(self) -> None:
        for path, m in self.modules.items():
            if isinstance(m, nn.RNNBase) and m.dropout > 0 and m.num_layers == 1:
                acc = self._by_key.get(("module", path))
                self.finding(
                    "rnn-dropout-single-layer",
                    path,
                    f"{type(m).__name__} '{path}' has dropout={m.dropout:g} but num_layers=1: PyTorch applies "
                    "that dropout only between stacked layers, so it does nothing (torch warns once).",
                    f"use num_layers >= 2, or add nn.Dropout({m.dropout:g}) on the {type(m).__name__}'s inputs "
                    "and outputs",
                    site=acc,
                )

    # -- output --
    def site_models(self) -> list[Site]:
        out = []
        for acc in self.sites:
            before, after = self._before_after(acc)
            shape = next((dc.in_shape for dc in acc.drop_calls if dc.in_shape), None)
            if shape is None:
                trace = self.train if acc.train_events else self.evals
                evs = acc.train_events or acc.eval_events
                if evs and trace.events[evs[0]].in_shapes:
                    shape = trace.events[evs[0]].in_shapes[0]
            cl = acc.call_location
            out.append(
                Site(
                    id=acc.id,
                    module=acc.module,
                    module_class=acc.module_class,
                    source=acc.source,
                    op=acc.op,
                    kind=acc.kind,
                    p=acc.p,
                    calls=acc.train_calls,
                    eval_calls=acc.eval_calls,
                    input_shape=list(shape) if shape else None,
                    before=before,
                    after=after,
                    inplace=acc.inplace,
                    location=self.location(acc.module),
                    call_location=Location(file=cl[0], line=cl[1], symbol=cl[2]) if cl else None,
                )
            )
        return out


_KEEP = re.compile(r"keep_?prob\w*|keep_?rate\w*|keep_?ratio\w*|retain_?prob\w*|\bkeep_?p\b|\bkeep\b", re.I)
_ONE_MINUS = re.compile(r"1(\.0*)?\s*-\s*(self\.|\w+\.)*$")


def _fmt(p: float | None) -> str:
    return "?" if p is None else f"{p:g}"


def _passes_output(ev: tr.Event) -> bool:
    """Ops that may stand between the logits and the model output: reshapes, softmax, sigmoid."""
    if ev.op in ("shape", "softmax", "dropout"):
        return True
    return ev.op == "activation" and ev.name.lower() in ("sigmoid", "logsigmoid")


def _minimal_sources(
    a: dict[tuple[str, int], tuple[list[torch.Tensor], list[torch.Tensor]]],
    b: dict[tuple[str, int], tuple[list[torch.Tensor], list[torch.Tensor]]],
) -> list[str]:
    """Modules whose outputs differ between two eval passes although their inputs were equal, innermost only."""
    sources: set[str] = set()
    for key, (ins_a, outs_a) in a.items():
        if key not in b:
            continue
        ins_b, outs_b = b[key]
        if not _same(outs_a, outs_b) and _same(ins_a, ins_b):
            sources.add(key[0])
    minimal = [
        s
        for s in sources
        if not any(o != s and ((s == "" and o != "<output>") or o.startswith(s + ".")) for o in sources)
    ]
    return sorted(minimal)


def _same(xs: Iterable[torch.Tensor], ys: Iterable[torch.Tensor]) -> bool:
    xs, ys = list(xs), list(ys)
    if len(xs) != len(ys):
        return False
    for x, y in zip(xs, ys, strict=True):
        if x.shape != y.shape:
            return False
        if not torch.allclose(x, y, rtol=1e-5, atol=1e-6, equal_nan=True):
            return False
    return True
