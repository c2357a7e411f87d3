"""From two traced forwards (train, eval) to dropout sites, and the context every audit rule reads.

A *site* is something that drops: a torch dropout module, ``nn.MultiheadAttention``/RNN ``dropout=``, a
dropout-like torch call (``F.dropout``, SDPA ``dropout_p``), a hand-written mask (``torch.rand`` /
``bernoulli_``), or a user module decided by behaviour: a leaf whose train-mode output is its input with
elements zeroed or rescaled by one factor and whose eval-mode output is its input (a class name such as
``DropPath`` only nominates it; containers of layers and the model itself are never sites).

The rules live in :mod:`advisor.audit.rules`, one module each; they read this context and call
:meth:`Analysis.finding`.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import math
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from advisor.audit import trace as tr
from advisor.audit.report import SEVERITY_RANK, Finding, Location, Site

_ADVISOR_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

#: packages whose code is not the user's even when installed in editable mode
THIRD_PARTY = frozenset(
    {"torch", "torchvision", "torchaudio", "timm", "transformers", "diffusers", "lightning", "pytorch_lightning"}
)

#: element- and channel-wise kinds: the family whose back-to-back use compounds the rate
ELEMENTWISE_KINDS = frozenset(
    {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha-dropout", "feature-alpha-dropout", "locked-dropout"}
)

_NOOP_FUNCS = frozenset({"contiguous", "clone", "detach", "identity", "to", "type_as", "float", "alias"})


# ---- source locations ---------------------------------------------------------------------------


def class_location(cls: type) -> Location | None:
    return _class_location(cls)


@functools.lru_cache(maxsize=512)
def _class_location(cls: Any) -> Location | None:
    try:
        file = inspect.getsourcefile(cls)
        if file is None:
            return None
        _, line = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return None
    return Location(file=file, line=max(line, 1), symbol=cls.__qualname__)


def _in_packages(file: str) -> bool:
    return "site-packages" in file or "dist-packages" in file


def is_user_class(cls: type) -> bool:
    mod = cls.__module__ or ""
    if mod.split(".")[0] in THIRD_PARTY or mod.split(".")[0] == "advisor":
        return False
    loc = class_location(cls)
    return loc is not None and not _in_packages(loc.file)


def third_party_package(cls: type) -> str | None:
    """'transformers' for a class that lives in an installed package (never the user's own code)."""
    top = (cls.__module__ or "").split(".")[0]
    if top in THIRD_PARTY:
        return top
    loc = class_location(cls)
    if loc is not None and _in_packages(loc.file):
        return top or None
    return None


def third_party_file(file: str) -> str | None:
    """The package a source file belongs to, when it lies in site-packages (or dist-packages)."""
    for marker in ("site-packages" + os.sep, "dist-packages" + os.sep):
        if marker in file:
            rest = file.split(marker, 1)[1]
            return rest.split(os.sep, 1)[0].removesuffix(".py") or None
    return None


@functools.lru_cache(maxsize=64)
def package_version(top: str) -> str:
    """'transformers 5.24.0': the installed distribution's version, or the module's __version__."""
    try:
        return f"{top} {importlib.metadata.version(top)}"
    except importlib.metadata.PackageNotFoundError:
        pass
    version = getattr(sys.modules.get(top), "__version__", None)
    return f"{top} {version}" if isinstance(version, str) else top


# ---- sites --------------------------------------------------------------------------------------


@dataclass
class SiteAcc:
    """A site being assembled from both traces."""

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
    rate_from: str | None = None  # the module whose rate a functional call consumed (timm attn_drop.p)
    registered: bool = True

    @property
    def zero(self) -> bool:
        """Its drop probability is exactly 0: it cannot do anything, so no placement rule applies."""
        return self.p == 0


def fmt_p(p: float | None) -> str:
    return "?" if p is None else f"{p:g}"


class Analysis:
    """The sites of one audit and the helpers the rules share; :meth:`run` applies every rule."""

    def __init__(
        self,
        model: nn.Module,
        train: tr.Trace,
        evals: tr.Trace,
        eval2: tr.Trace | None,
        *,
        fallback_location: Location | None = None,
        unregistered: dict[int, tuple[str, nn.Module]] | None = None,
        include_third_party: bool = False,
    ) -> None:
        self.model = model
        self.train = train
        self.evals = evals
        self.eval2 = eval2
        self.fallback_location = fallback_location
        self.include_third_party = include_third_party
        self.modules: dict[str, nn.Module] = dict(model.named_modules())
        self.unregistered: dict[str, nn.Module] = {path: m for path, m in (unregistered or {}).values()}
        self.modules.update(self.unregistered)
        self.findings: list[Finding] = []
        self.notes: list[str] = []  # what this input did not exercise (modules skipped, replaced or unused)
        self.sites: list[SiteAcc] = []
        self._by_key: dict[tuple[str, ...], SiteAcc] = {}
        self._call_site: dict[int, SiteAcc] = {}
        self._event_sites: dict[bool, dict[int, SiteAcc]] = {True: {}, False: {}}

    # -- helpers --
    def cls_of(self, path: str) -> str:
        m = self.modules.get(path)
        return type(m).__name__ if m is not None else "?"

    def location(self, path: str) -> Location | None:
        """Where the nearest enclosing class written by the user is defined (never this tool's files)."""
        for anc in _ancestors(path):
            m = self.modules.get(anc)
            if m is not None and is_user_class(type(m)):
                return class_location(type(m))
        if self.fallback_location is not None:
            return self.fallback_location
        loc = class_location(type(self.model))
        return None if loc is None or loc.file.startswith(_ADVISOR_DIR) else loc

    def third_party(self, path: str, call_location: tuple[str, int, str] | None = None) -> str | None:
        """'transformers 5.24.0' when the code to fix lies in an installed package, None for the user's code."""
        if call_location is not None:
            top = third_party_file(call_location[0])
            if top is not None:
                return package_version(top)
            if not call_location[0].startswith("<"):
                return None
        for anc in _ancestors(path):
            m = self.modules.get(anc)
            if m is None or tr.is_torch_class(m):
                continue
            top = third_party_package(type(m))
            return package_version(top) if top is not None else None
        return None

    def finding(
        self,
        slug: str,
        path: str,
        message: str,
        fix: str,
        *,
        site: SiteAcc | None = None,
        call_location: tuple[str, int, str] | None = None,
    ) -> None:
        from advisor.audit.rules import rule_info

        info = rule_info(slug)
        cl = call_location or (site.call_location if site is not None else None)
        severity = info.severity
        upstream = self.third_party(path, cl)
        if upstream is not None:
            glob = path or "<root>"
            message += (
                f" This is in {upstream}'s code, not yours: report it upstream or allow it (--allow '{glob}:{slug}')."
            )
            if not self.include_third_party and SEVERITY_RANK[severity] > SEVERITY_RANK["info"]:
                severity = "info"
        if cl is not None and cl[0].startswith(_ADVISOR_DIR):
            cl = None
        self.findings.append(
            Finding(
                rule_id=info.id,
                slug=slug,
                severity=severity,
                title=info.title,
                module=path,
                module_class=self.cls_of(path),
                site=site.id if site is not None else None,
                message=message,
                fix=fix,
                citations=list(info.citations),
                location=self.location(path),
                call_location=Location(file=cl[0], line=cl[1], symbol=cl[2]) if cl else None,
                third_party=upstream,
            )
        )

    def site_of(self, dc: tr.DropCall) -> SiteAcc | None:
        return self._call_site.get(id(dc))

    def site_at(self, path: str) -> SiteAcc | None:
        return self._by_key.get(("module", path))

    def name(self, acc: SiteAcc) -> str:
        if acc.source == "module":
            return f"{acc.module_class} '{acc.module}'"
        return f"{acc.op} in '{acc.module or '<root>'}'"

    def event_site(self, trace: tr.Trace, idx: int) -> SiteAcc | None:
        """The site an event of ``trace`` belongs to (a dropout module call or a dropout-like torch call)."""
        return self._event_sites[trace.training].get(idx)

    # -- sites --
    def _site(self, key: tuple[str, ...], **kw: Any) -> SiteAcc:
        acc = self._by_key.get(key)
        if acc is None:
            acc = SiteAcc(key=key, **kw)
            self._by_key[key] = acc
            self.sites.append(acc)
        return acc

    def _candidate_is_site(self, path: str) -> bool:
        """A user module nominated by its name drops by behaviour (or never ran, so only its name is known)."""
        seen = self.train.behaviour.get(path, set()) | self.evals.behaviour.get(path, set())
        if not seen:
            return True
        if tr.OTHER not in seen:
            return True
        # same shape, not a zero/rescale pattern: still a dropout variant if it draws random masks (Gaussian)
        return any(dc.owner == path for dc in self.train.drop_calls)

    def collect_sites(self) -> None:
        for path, m in self.modules.items():
            kind = tr.dropout_like_kind(m)
            op = None
            if kind is not None:
                op = f"nn.{type(m).__name__}" if tr.is_torch_class(m) else type(m).__name__
            elif isinstance(m, nn.MultiheadAttention) and m.dropout > 0:
                kind, op = "attention-dropout", "nn.MultiheadAttention(dropout=)"
            elif isinstance(m, nn.RNNBase) and m.dropout > 0:
                kind, op = "dropout", f"nn.{type(m).__name__}(dropout=)"
            elif path and tr.is_candidate(m) and self._candidate_is_site(path):
                kind, op = tr.dropout_like_kind_from_name(type(m).__name__), type(m).__name__
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
                registered=path not in self.unregistered,
            )
            acc.train_calls = self.train.calls.get(path, 0)
            acc.eval_calls = self.evals.calls.get(path, 0)
        for trace in (self.train, self.evals):
            for ev in trace.events:
                if ev.kind != "module" or ev.op != "dropout":
                    continue
                if ("module", ev.owner) not in self._by_key:
                    ev.op = "module"  # nominated by its name, but it does not drop
        for trace, is_train in ((self.train, True), (self.evals, False)):
            for ev in trace.events:
                if ev.kind == "module" and ("module", ev.owner) in self._by_key:
                    acc = self._by_key[("module", ev.owner)]
                    (acc.train_events if is_train else acc.eval_events).append(ev.idx)
                    self._event_sites[is_train][ev.idx] = acc
                    if is_train:
                        acc.first = min(acc.first, ev.idx)
            for dc in trace.drop_calls:
                self._attach(dc, trace, is_train)
        self._link_rate_holders()
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
                self._event_sites[True].setdefault(dc.event, acc)
        else:
            acc.eval_calls += 1
            if dc.event >= 0:
                acc.eval_events.append(dc.event)
                self._event_sites[False].setdefault(dc.event, acc)

    def _link_rate_holders(self) -> None:
        """A dropout module that only stores the rate a functional call uses (timm ``attn_drop.p`` handed to
        SDPA, transformers ``self.dropout.p`` handed to eager attention) is one site with that call."""
        calls = [
            s
            for s in self.sites
            if s.source == "function" and s.train_calls > 0 and s.rate_from is None and (s.p or 0) > 0
        ]
        for holder in list(self.sites):
            if holder.source != "module" or holder.train_calls > 0 or not (holder.p or 0) > 0:
                continue
            if isinstance(holder.mod, (nn.MultiheadAttention, nn.RNNBase)):
                continue
            parent = holder.module.rpartition(".")[0]
            best = None
            for call in calls:
                if call.p is None or holder.p is None or abs(call.p - holder.p) > 1e-9:
                    continue
                rank = _owner_rank(parent, call.module)
                if rank is not None and (best is None or rank < best[0]):
                    best = (rank, call)
            if best is None:
                continue
            call = best[1]
            call.rate_from = holder.module
            calls.remove(call)
            self.sites.remove(holder)
            del self._by_key[holder.key]

    # -- graph walks over a trace (the train trace unless said otherwise) --
    def forward(
        self, start: int, passes: Callable[[tr.Event], bool], trace: tr.Trace | None = None
    ) -> Iterator[tr.Event]:
        """Consumers reachable from ``start`` through events that ``passes`` (the first other one included)."""
        trace = trace or self.train
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

    def back(self, start: int, passing: set[str], limit: int = 16) -> Iterator[tr.Event]:
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

    def input_producer(self, idx: int, trace: tr.Trace | None = None) -> tr.Event | None:
        """The producer of an event's first input, looking through shape-only ops and no-ops."""
        trace = trace or self.train
        ev = trace.events[idx]
        while ev.producers and ev.producers[0] >= 0:
            prev = trace.events[ev.producers[0]]
            if prev.op != "shape" and not self.noop(prev, trace):
                return prev
            ev = prev
        return None

    def noop(self, ev: tr.Event, trace: tr.Trace | None = None) -> bool:
        """nn.Identity, a dropout of rate 0, .contiguous() and the like: nothing worth naming as a neighbour."""
        if ev.kind == "module":
            if isinstance(ev.module, nn.Identity):
                return True
            acc = self.event_site(trace or self.train, ev.idx)
            return acc is not None and acc.zero
        if ev.op == "dropout":
            acc = self.event_site(trace or self.train, ev.idx)
            return acc is not None and acc.zero
        return tr.normalize_name(ev.name) in _NOOP_FUNCS

    def reaches(self, idx: int, targets: set[int], lo: int, trace: tr.Trace | None = None, limit: int = 4000) -> bool:
        """Whether event ``idx`` depends on one of ``targets``, walking producers no earlier than ``lo``."""
        trace = trace or self.train
        if idx in targets:
            return True
        seen = {idx}
        todo = [idx]
        while todo and len(seen) < limit:
            cur = todo.pop()
            for p in trace.events[cur].producers if cur >= 0 else ():
                if p in targets:
                    return True
                if p >= lo and p not in seen:
                    seen.add(p)
                    todo.append(p)
        return False

    def has_residual_merge(self, path: str) -> bool | None:
        """Whether a call of module ``path`` adds two branches that both start from its input (a residual).

        None when the module never ran in the train-mode forward.
        """
        spans = self.train.spans.get(path, [])
        if not spans:
            return None
        for span in spans:
            targets = {p for p in span.in_producers if p != -2}
            if not targets:
                continue
            for idx in range(span.start, span.end):
                ev = self.train.events[idx]
                if ev.op != "add" or len([p for p in ev.producers if p != -2]) < 2:
                    continue
                operands = [p for p in ev.producers if p != -2][:2]
                if all(self.reaches(p, targets, span.start) for p in operands):
                    return True
        return False

    def describe(self, ev: tr.Event | None) -> str:
        if ev is None:
            return "-"
        where = ev.owner or "<root>"
        if ev.kind == "module":
            return f"{ev.name} {where}"
        return f"{ev.name}() in {where}"

    def _producer_index(self, acc: SiteAcc, through: frozenset[str] = frozenset()) -> tuple[tr.Trace, int] | None:
        """The trace and index of the operation that produced the site's input, looking past no-ops and the
        categories in ``through``: -1 is the model's input, -2 a parameter; None when it has no input or never ran.
        """
        trace = self.train if acc.train_events else self.evals
        events = acc.train_events or acc.eval_events
        if not events or not trace.events[events[0]].producers:
            return None
        p = trace.events[events[0]].producers[0]
        while (
            p >= 0
            and (self.noop(trace.events[p], trace) or trace.events[p].op in through)
            and trace.events[p].producers
        ):
            p = trace.events[p].producers[0]
        return trace, p

    def producer(self, acc: SiteAcc, through: frozenset[str] = frozenset()) -> tr.Event | None:
        """The first operation (module or call) that produced the site's input, skipping no-ops.

        ``through`` names operation categories to look past as well (e.g. ``{"activation"}`` to reach the
        layer before a ReLU). None when the input is the model's input, a parameter, or the site never ran.
        """
        found = self._producer_index(acc, through)
        if found is None or found[1] < 0:
            return None
        return found[0].events[found[1]]

    def _neighbours(self, acc: SiteAcc) -> tuple[str | None, str | None]:
        trace = self.train if acc.train_events else self.evals
        events = acc.train_events or acc.eval_events
        if not events:
            return None, None
        ev = trace.events[events[0]]
        before = "-"
        found = self._producer_index(acc)
        if found is not None:
            p = found[1]
            before = "input" if p == -1 else "parameter" if p == -2 else self.describe(trace.events[p])
        after = "-"
        cur = ev.idx
        for _ in range(64):
            cons = trace.consumers.get(cur, [])
            if not cons:
                after = "output" if cur in trace.outputs else "-"
                break
            nxt = trace.events[min(cons)]
            if not self.noop(nxt, trace):
                after = self.describe(nxt)
                break
            cur = nxt.idx
        return before, after

    # -- running --
    def run(self) -> None:
        from advisor.audit.rules import run_rules

        self.collect_sites()
        run_rules(self)

    def site_models(self) -> list[Site]:
        out = []
        for acc in self.sites:
            before, after = self._neighbours(acc)
            shape = next((dc.in_shape for dc in acc.drop_calls if dc.in_shape), None)
            if shape is None:
                trace = self.train if acc.train_events else self.evals
                evs = acc.train_events or acc.eval_events
                if evs and trace.events[evs[0]].in_shapes:
                    shape = trace.events[evs[0]].in_shapes[0]
            cl = acc.call_location
            if cl is not None and cl[0].startswith(_ADVISOR_DIR):
                cl = None
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
                    rate_from=acc.rate_from,
                    registered=acc.registered,
                )
            )
        return out


def _ancestors(path: str) -> Iterator[str]:
    """'a.b.c' -> 'a.b.c', 'a.b', 'a', '' (the model itself last)."""
    parts = path.split(".") if path else []
    for i in range(len(parts), -1, -1):
        yield ".".join(parts[:i])


def _owner_rank(parent: str, owner: str) -> int | None:
    """How close a functional call's owner is to a rate holder's parent module: 0 = the parent itself."""
    if owner == parent:
        return 0
    if parent and owner.startswith(parent + "."):
        return 1 + owner[len(parent) :].count(".")
    return None
