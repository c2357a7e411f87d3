"""Runtime checks for the dropout mode bugs that one forward pass cannot show.

``advisor.watch(model)`` is a context manager and a decorator. While it is active it warns, once per
module path and kind, with a :class:`DropoutModeWarning` (and records a :class:`WatchEvent`) when

* ``dropout-on-in-evaluation`` (see DRP320): dropout with ``p > 0`` runs in training mode in a forward
  that computes no gradients: under ``torch.no_grad()`` / ``torch.inference_mode()`` (evaluation
  without ``model.eval()``; ``no_grad`` does not switch dropout off), or with nothing in the model's
  output requiring grad (a frozen EMA or teacher copy evaluated in training mode);
* ``dropout-off-in-training`` (see DRP321): a dropout with ``p > 0`` is in eval mode in a training
  step: the backward pass runs through its output *and* accumulates gradients into a parameter of the
  watched model (``loss.backward()``). Validation forwards without ``no_grad`` never backpropagate, and
  ``torch.autograd.grad`` (input gradients, saliency) accumulates nothing, so neither raises it.
  A dropout whose enclosing layer (the nearest module holding parameters) has no trainable parameter
  is part of a frozen block and is left alone.

What is covered: ``nn.Dropout``/``Dropout1d/2d/3d``/``AlphaDropout``/``FeatureAlphaDropout`` modules
that are called; ``nn.MultiheadAttention(dropout=)``; ``nn.LSTM/GRU/RNN(dropout=, num_layers >= 2)``;
leaf stochastic-depth modules (torchvision ``StochasticDepth``, timm ``DropPath``/``DropBlock2d``: a
leaf whose class name contains "Drop" or "StochasticDepth" and that holds a float ``p``/``drop_prob``);
and the transformers/timm rate-holder pattern, where an ``nn.Dropout`` is never called and its owner
hands ``self.dropout.p`` (or a float attribute such as ``attention_dropout``) to ``F.dropout`` or
``F.scaled_dot_product_attention``. Rate holders are checked only in a suspicious state (no grad with
a holder in training mode, or grad with a holder in eval mode): then a ``TorchFunctionMode`` records
the owner's dropout calls for that forward and links each to the holder whose rate it used.

Not covered: functional dropout with a literal rate in a module that holds no rate attribute
(``F.dropout(x, 0.1, self.training)``), hand-written masks (``torch.bernoulli``), TorchScript,
``torch.compile``/exported graphs, dropout inside custom autograd functions or C++/CUDA extensions, and
the per-device replicas of ``nn.DataParallel`` (hooks are bound to the watched modules themselves;
``DistributedDataParallel`` runs them and is covered).
Legitimate train-mode evaluation (MC dropout, BatchNorm recalibration such as
``torch.optim.swa_utils.update_bn``) needs ``allow=`` or ``with w.paused():``.

Costs when nothing is wrong: one forward hook per dropout module, a pre-hook per rate owner (removed
once every dropout child of that owner has been seen running as a module), a post-hook per watched model,
each a few attribute reads: about 1 µs per watched module call; entering a watch costs 13–70 µs for the
models of ``bench/bench_watch.py``, which measures both.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from advisor.audit.config import AllowRule
from advisor.errors import UsageError

__all__ = [
    "KINDS",
    "OFF_IN_TRAINING",
    "ON_IN_EVALUATION",
    "DropoutModeWarning",
    "Watch",
    "WatchEvent",
    "frozen",
    "is_frozen",
    "watch",
]

ON_IN_EVALUATION = "dropout-on-in-evaluation"
OFF_IN_TRAINING = "dropout-off-in-training"
#: kind -> knowledge-base entry (written by the questions engineer) and a one-line title
KINDS: dict[str, tuple[str, str]] = {
    ON_IN_EVALUATION: ("DRP320", "dropout runs in training mode in a forward that computes no gradients"),
    OFF_IN_TRAINING: ("DRP321", "dropout is switched off in a step that trains parameters"),
}
FROZEN_ATTR = "_dropout_advisor_frozen"
ROOT = "<root>"

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_OUR_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
#: float attributes that hold a dropout rate consumed by a functional call (attention_dropout, drop_rate,
#: dropout_p, attn_pdrop ...); drop_path_rate is a construction-time schedule, not a rate that is applied
_RATE_ATTR = re.compile(r"drop", re.IGNORECASE)
_NOT_RATE_ATTR = re.compile(r"path", re.IGNORECASE)
_DROP_PATH_CLASS = re.compile(r"Drop|StochasticDepth")

#: dropout-like torch functions: func -> (name, index of the rate argument, its keyword, index/keyword and
#: default of the training flag, or None where the call drops whenever its rate is > 0)
_FUNCS: dict[Any, tuple[str, int, str, int, str, bool | None]] = {
    F.dropout: ("F.dropout", 1, "p", 2, "training", True),
    F.dropout1d: ("F.dropout1d", 1, "p", 2, "training", True),
    F.dropout2d: ("F.dropout2d", 1, "p", 2, "training", True),
    F.dropout3d: ("F.dropout3d", 1, "p", 2, "training", True),
    F.alpha_dropout: ("F.alpha_dropout", 1, "p", 2, "training", False),
    F.feature_alpha_dropout: ("F.feature_alpha_dropout", 1, "p", 2, "training", False),
    F.scaled_dot_product_attention: ("F.scaled_dot_product_attention", 4, "dropout_p", -1, "", None),
    torch.dropout: ("torch.dropout", 1, "p", 2, "train", None),
    torch.nn.functional.multi_head_attention_forward: (
        "F.multi_head_attention_forward",
        11,
        "dropout_p",
        -1,
        "training",
        True,
    ),
}


class DropoutModeWarning(UserWarning):
    """A dropout mode bug seen at run time by :func:`watch` or the Lightning callback."""


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One finding of :func:`watch`: the first time a module path showed one kind of mode bug."""

    kind: str  # ON_IN_EVALUATION or OFF_IN_TRAINING
    kb_id: str  # DRP320 / DRP321
    module: str  # module path ('<root>' for the model itself; 'name.path' when several models are watched)
    module_class: str
    p: float  # the drop probability at that moment
    how: str  # 'called', or how a rate holder's rate was consumed ('rate read by BertSelfAttention ...')
    context: str  # what was seen: 'under torch.no_grad()', 'backward into trainable parameters' ...
    message: str  # the full text of the warning
    where: str | None = None  # 'file.py:LINE' of the user's code that ran the forward/backward

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def frozen(module: nn.Module, reason: str = "frozen on purpose") -> nn.Module:
    """Mark ``module`` (and everything inside it) as intentionally kept in eval mode while the rest trains.

    :func:`watch` and the Lightning callback then never report ``dropout-off-in-training`` inside it
    (``dropout-on-in-evaluation`` is still reported: a frozen part running dropout is usually a bug).
    Returns the module, so ``self.backbone = advisor.frozen(AutoModel.from_pretrained(...))`` works.
    The mark is a plain attribute: it survives ``copy.deepcopy`` and does not touch ``state_dict``. Mark
    before watching (a Watch reads marks when it first sees the model; ``Watch.rescan()`` re-reads them).
    Raises :class:`~advisor.errors.UsageError` when ``module`` is not an ``nn.Module``.
    """
    if not isinstance(module, nn.Module):
        raise UsageError(
            f"frozen() needs a torch.nn.Module, got {type(module).__name__}", hint="pass the submodule itself"
        )
    module.__dict__[FROZEN_ATTR] = str(reason)
    return module


def is_frozen(module: nn.Module) -> bool:
    """True when :func:`frozen` marked this very module (not its parents)."""
    return FROZEN_ATTR in module.__dict__


# ---- sites ----------------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Site:
    """A place that drops: a dropout-bearing module, or a rate held for a functional call."""

    path: str  # display path
    module: nn.Module  # whose .training governs the dropout (the owner, for a float attribute)
    owner: nn.Module | None  # the module whose forward consumes the rate (rate holders only)
    attr: str | None  # the float attribute of ``owner`` that holds the rate (attribute holders only)
    rate: Callable[[], float]
    called: bool  # a module that is called itself (False: a float attribute)
    ancestors: tuple[nn.Module, ...]  # nearest first, the site's own module excluded
    allow_on: str | None = None  # the allow entry / frozen mark that suppresses each kind
    allow_off: str | None = None
    done: set[str] = field(default_factory=set)  # kinds already reported
    last_train_epoch: int = -1  # the number of root forwards completed when it last ran in training mode
    frozen_layer: bool | None = None  # cached: its enclosing layer has no trainable parameter
    seen_called: bool = False  # a module that was called itself (so not a rate holder of its owner)

    @property
    def module_class(self) -> str:
        return type(self.module).__name__ if self.attr is None else f"{type(self.module).__name__}.{self.attr}"

    def p(self) -> float:
        try:
            return float(self.rate())
        except (TypeError, ValueError, AttributeError):
            return 0.0


def _dropout_rate(module: nn.Module) -> Callable[[], float] | None:
    """How to read the rate of a module that drops when called (None: not such a module)."""
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return lambda: module.p
    if isinstance(module, nn.MultiheadAttention):
        return lambda: module.dropout
    if isinstance(module, nn.RNNBase):
        return lambda: module.dropout if module.num_layers > 1 else 0.0
    if not any(True for _ in module.children()) and _DROP_PATH_CLASS.search(type(module).__name__):
        for attr in ("drop_prob", "p"):
            value = getattr(module, attr, None)
            if isinstance(value, float) and not isinstance(value, bool):
                return lambda: getattr(module, attr)
    return None


def _rate_attrs(module: nn.Module) -> list[str]:
    return [
        name
        for name, value in vars(module).items()
        if type(value) is float and _RATE_ATTR.search(name) and not _NOT_RATE_ATTR.search(name)
    ]


def discover(models: Mapping[str, nn.Module]) -> tuple[list[Site], dict[int, list[Site]]]:
    """Every dropout site of ``models`` (label -> model; '' for a single model), and the rate holders
    per owner (``id(owner)`` -> sites whose rate the owner's forward may hand to a functional call)."""
    sites: list[Site] = []
    holders: dict[int, list[Site]] = {}
    seen: set[int] = set()
    for label, model in models.items():
        parents: dict[str, nn.Module] = {}
        for path, module in model.named_modules():
            parents[path] = module
            if id(module) in seen:
                continue
            seen.add(id(module))
            full = ".".join(x for x in (label, path) if x) or ROOT
            chain = tuple(parents[p] for p in _prefixes(path))
            rate = _dropout_rate(module)
            if rate is not None:
                owner = chain[0] if chain else None
                site = Site(full, module, owner, None, rate, True, chain)
                sites.append(site)
                if owner is not None and isinstance(module, nn.modules.dropout._DropoutNd):
                    holders.setdefault(id(owner), []).append(site)
                continue
            for attr in _rate_attrs(module):
                site = Site(
                    f"{full}.{attr}" if full != ROOT else attr,
                    module,
                    module,
                    attr,
                    functools.partial(getattr, module, attr),
                    False,
                    (module, *chain),
                )
                sites.append(site)
                holders.setdefault(id(module), []).append(site)
    return sites, holders


def _prefixes(path: str) -> list[str]:
    """'a.b.c' -> ['a.b', 'a', ''] (the parents, nearest first); '' -> []."""
    if not path:
        return []
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, -1, -1)]


def in_frozen_layer(site: Site) -> bool:
    """True when the nearest module holding parameters (the site's own module, then its parents) has no
    trainable parameter: a frozen block whose eval mode is the user's choice."""
    for module in (site.module, *site.ancestors):
        params = list(module.parameters())
        if params:
            return not any(p.requires_grad for p in params)
    return True


# ---- allow entries --------------------------------------------------------------------------------


def parse_allow(entries: Iterable[str | AllowRule]) -> list[AllowRule]:
    """'backbone.*' (every kind) or 'backbone.*:dropout-off-in-training' -> AllowRule; a bad kind is a
    :class:`~advisor.errors.UsageError` naming it. Globs match module paths as the auditor's allow-list does."""
    if isinstance(entries, str):
        entries = [entries]
    rules = []
    for entry in entries:
        if isinstance(entry, AllowRule):
            rules.append(entry)
            continue
        if not isinstance(entry, str) or not entry.strip():
            raise UsageError(f"allow entries are module globs, got {entry!r}", hint="for example allow=['backbone.*']")
        text = entry.strip()
        glob, sep, kind = text.rpartition(":")
        if not sep:
            glob, kind = text, "*"
        kind = kind.strip()
        if kind != "*" and kind not in KINDS:
            by_id = {v[0]: k for k, v in KINDS.items()}
            if kind.upper() in by_id:
                kind = by_id[kind.upper()]
            else:
                close = difflib.get_close_matches(kind, list(KINDS), n=1, cutoff=0.5)
                hint = f"did you mean '{close[0]}'?" if close else "kinds: " + ", ".join(KINDS)
                raise UsageError(f"unknown kind '{kind}' in allow entry '{entry}'", hint=hint)
        rules.append(AllowRule(glob.strip() or "*", kind, "watch(allow=)", text=text))
    return rules


def _allowed(rules: list[AllowRule], path: str, kind: str) -> str | None:
    module = "" if path == ROOT else path
    for rule in rules:
        if rule.matches(module, kind):
            return str(rule)
    return None


# ---- the watcher ----------------------------------------------------------------------------------

F_ = TypeVar("F_", bound=Callable[..., Any])


class _Recorder(TorchFunctionMode):
    """Records dropout-like calls (with the module that issued them) while a rate owner runs."""

    def __init__(self, calls: list[tuple[int, str, float, bool]]) -> None:
        super().__init__()
        self.calls = calls

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        spec = _FUNCS.get(func)
        if spec is not None:
            name, pi, pk, ti, tk, tdefault = spec
            p = _arg(args, kwargs, pi, pk, 0.0)
            training = True if tdefault is None else bool(_arg(args, kwargs, ti, tk, tdefault))
            issuer = _issuer(sys._getframe(1))
            if issuer is not None and isinstance(p, (int, float)):
                self.calls.append((id(issuer), name, float(p), training))
        return func(*args, **kwargs)


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, key: str, default: Any) -> Any:
    if key and key in kwargs:
        return kwargs[key]
    if 0 <= index < len(args):
        return args[index]
    return default


def _issuer(frame: Any) -> nn.Module | None:
    """The module whose code made a call: the first frame with an nn.Module ``self`` (or the ``module``
    argument of transformers' attention helpers, which receive the attention layer explicitly)."""
    for _ in range(12):
        if frame is None:
            return None
        local = frame.f_locals
        for name in ("self", "module"):
            obj = local.get(name)
            if isinstance(obj, nn.Module):
                return obj
        frame = frame.f_back
    return None


def _inert(*_args: Any) -> None:
    """What a watch hook becomes in a deep copy or a pickle of a watched model: nothing."""


def _make_inert() -> Callable[..., None]:
    return _inert


class _Hook:
    """A hook bound to one module of one Watch. ``copy.deepcopy(model)`` while watched (an EMA copy made in
    the loop) gives the copy an inert hook instead of one that reports for the original; pickling does the
    same, so ``torch.save(model)`` works while watched. Hooks are classes, not closures: one Python call per
    hooked module call."""

    __slots__ = ("target", "watch")

    def __init__(self, watch: Watch, target: nn.Module) -> None:
        self.watch = watch
        self.target = target

    def __deepcopy__(self, memo: dict[int, Any]) -> Callable[..., None]:
        return _inert

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_make_inert, ())


class _SiteHook(_Hook):
    """Forward hook of a module that drops when called."""

    __slots__ = ("site",)

    def __init__(self, watch: Watch, site: Site) -> None:
        super().__init__(watch, site.module)
        self.site = site

    def __call__(self, module: nn.Module, _args: Any, output: Any) -> None:
        if module is not self.target:
            return
        s, w = self.site, self.watch
        s.seen_called = True
        if w._recorder is not None:
            w._called.add(id(module))
        # the common cases first, without reading the rate: training with gradients, evaluation without
        if torch.is_grad_enabled():
            if module.training:
                s.last_train_epoch = w._epoch
            elif OFF_IN_TRAINING not in s.done and not s.allow_off and not w._paused and s.p() > 0:
                w._watch_backward(output, (s,))
        elif module.training and ON_IN_EVALUATION not in s.done and not s.allow_on and not w._paused:
            p = s.p()
            if p > 0:
                w._emit(ON_IN_EVALUATION, s, p, _no_grad_context())


class _OwnerPre(_Hook):
    """Forward pre-hook of a module whose forward may hand a held rate to a functional call."""

    __slots__ = ("holders",)

    def __init__(self, watch: Watch, owner: nn.Module, holders: list[Site]) -> None:
        super().__init__(watch, owner)
        self.holders = holders

    def __call__(self, owner: nn.Module, _args: Any) -> None:
        if owner is not self.target:
            return
        w = self.watch
        if w._recorder is None:
            for h in self.holders:
                if not h.seen_called:
                    break
            else:
                # every child dropout runs as a module (its own hook checks it): no rate is handed over here
                w._retire(owner)
                return
            if w._paused or not w._suspicious(self.holders):
                return
            w._start_recording(owner)
        # a one-shot post-hook, only while recording: owners cost one pre-hook call when nothing is wrong
        key = id(owner)
        if key not in w._owner_posts:
            w._owner_posts[key] = owner.register_forward_hook(_OwnerPost(w, owner), always_call=True)


class _OwnerPost(_Hook):
    __slots__ = ()

    def __call__(self, owner: nn.Module, _args: Any, output: Any) -> None:
        if owner is self.target:
            self.watch._owner_post(owner, output)


class _RootPost(_Hook):
    """Forward hook of a watched model: the end of one forward (an epoch for the sites inside)."""

    __slots__ = ("sites",)

    def __init__(self, watch: Watch, model: nn.Module, sites: list[Site]) -> None:
        super().__init__(watch, model)
        self.sites = sites

    def __call__(self, model: nn.Module, _args: Any, output: Any) -> None:
        if model is not self.target:
            return
        w = self.watch
        # sites that ran in training mode since the last root forward ended carry this epoch
        epoch = w._epoch
        w._epoch += 1
        if w._pending:
            w._pending.clear()  # left by an autograd.grad() that accumulated nothing
        if w._paused or not torch.is_grad_enabled() or not model.training:
            return
        if isinstance(output, torch.Tensor):
            if output.requires_grad:
                return
        elif _any_tensor(output, _requires_grad) or not _any_tensor(output, _is_tensor):
            return
        # gradients are on, yet nothing in the output needs one: an evaluation (EMA/teacher copy)
        for s in self.sites:
            if s.last_train_epoch == epoch and ON_IN_EVALUATION not in s.done and not s.allow_on:
                p = s.p()
                if p > 0 and s.module.training:
                    w._emit(ON_IN_EVALUATION, s, p, "in a forward whose output requires no gradient")


def _requires_grad(t: torch.Tensor) -> bool:
    return t.requires_grad


def _is_tensor(_t: torch.Tensor) -> bool:
    return True


class Watch:
    """See :func:`watch`. Re-entrant; reports once per module path and kind over its whole life."""

    def __init__(self, models: Mapping[str, nn.Module] | None, allow: Iterable[str | AllowRule], warn: bool) -> None:
        self._models = dict(models) if models is not None else None
        self._allow = parse_allow(allow)
        self._warn = warn
        self._events: list[WatchEvent] = []
        self._reported: set[tuple[str, str]] = set()
        self._depth = 0
        self._paused = 0
        self._handles: list[Any] = []
        self._sites: list[Site] = []
        self._holders: dict[int, list[Site]] = {}
        self._epoch = 0
        # rate-holder checks (suspicious states only)
        self._recorder: _Recorder | None = None
        self._recorder_owner: int | None = None
        self._calls: list[tuple[int, str, float, bool]] = []
        self._called: set[int] = set()
        self._owner_posts: dict[int, Any] = {}  # one-shot post-hooks of owners while recording
        # backward checks: graph task id -> sites whose eval-mode output the backward went through
        self._pending: dict[int, set[tuple[Site, str]]] = {}
        self._armed: set[int] = set()
        self._static: list[Site] | None = None  # sites for check() while not installed
        self._plan: tuple[Any, list[Site], dict[int, list[Site]], list[tuple[Any, Any, bool, int | None]]] | None = None
        self._owner_pres: dict[int, Any] = {}  # pre-hook handles of rate owners
        self._retired: set[int] = set()  # owners whose dropout children all turned out to be called

    # -- public API --

    @property
    def events(self) -> list[WatchEvent]:
        """Every event so far, in order (one per module path and kind)."""
        return list(self._events)

    def by_kind(self, kind: str) -> list[WatchEvent]:
        return [e for e in self._events if e.kind == kind]

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No checks inside (MC dropout sampling, BatchNorm recalibration with dropout on)."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def check(self, expect: str, context: str = "") -> list[WatchEvent]:
        """Check the watched models' modes now, without running anything: ``expect='train'`` reports dropout
        with p > 0 in eval mode (outside frozen layers), ``expect='eval'`` dropout with p > 0 in training
        mode. Returns the new events. The sites found by the first call are reused until :meth:`rescan`.
        Raises :class:`~advisor.errors.UsageError` on a bad ``expect`` or when no model is watched."""
        if expect not in ("train", "eval"):
            raise UsageError(f"check(expect={expect!r}): expect 'train' or 'eval'", hint="check(expect='train')")
        if self._depth:
            sites = self._sites
        else:
            if self._static is None:
                self._static = self._apply_allow(discover(self._require_models())[0])
            sites = self._static
        before = len(self._events)
        for s in sites:
            p = s.p()
            if p <= 0:
                continue
            if expect == "train" and not s.module.training and OFF_IN_TRAINING not in s.done and not s.allow_off:
                if s.frozen_layer is None:
                    s.frozen_layer = in_frozen_layer(s)
                if not s.frozen_layer:
                    self._emit(OFF_IN_TRAINING, s, p, context or "at the start of a training step")
            elif expect == "eval" and s.module.training and ON_IN_EVALUATION not in s.done and not s.allow_on:
                self._emit(ON_IN_EVALUATION, s, p, context or "during evaluation")
        return self._events[before:]

    def rescan(self) -> None:
        """Forget the sites found so far (after modules were added, replaced, marked frozen or unfrozen); the
        next :meth:`check` or entry discovers them again."""
        self._static = None
        self._plan = None
        for s in self._sites:
            s.frozen_layer = None

    def __enter__(self) -> Watch:
        if self._depth == 0:
            self._install(self._require_models())
        self._depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._uninstall()

    def __call__(self, fn: F_) -> F_:
        """Use as a decorator: every call of ``fn`` runs watched. Without models given to :func:`watch`,
        the nn.Module arguments of each call are watched, labelled by parameter name."""
        if not callable(fn):
            raise UsageError(f"watch(...) decorates a function, got {type(fn).__name__}", hint="@advisor.watch(model)")
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self._models is not None or self._depth:
                with self:
                    return fn(*args, **kwargs)
            found = _module_arguments(signature, args, kwargs)
            if not found:
                raise UsageError(
                    f"@watch() on {fn.__name__}: no nn.Module among its arguments",
                    hint="name the model: @advisor.watch(model)",
                )
            self._models = found
            try:
                with self:
                    return fn(*args, **kwargs)
            finally:
                self._models = None

        return wrapper  # type: ignore[return-value]

    # -- installation --

    def _require_models(self) -> dict[str, nn.Module]:
        if not self._models:
            raise UsageError(
                "watch() has no model to watch",
                hint="pass it: 'with advisor.watch(model):' (only the decorator form may omit it)",
            )
        return self._models

    def _apply_allow(self, sites: list[Site]) -> list[Site]:
        for s in sites:
            s.allow_on = _allowed(self._allow, s.path, ON_IN_EVALUATION)
            s.allow_off = _allowed(self._allow, s.path, OFF_IN_TRAINING)
            if s.allow_off is None:
                for m in (s.module, *s.ancestors):
                    if FROZEN_ATTR in m.__dict__:
                        s.allow_off = f"advisor.frozen(): {m.__dict__[FROZEN_ATTR]}"
                        break
        return sites

    def _install(self, models: dict[str, nn.Module]) -> None:
        """Register the hooks. The plan (sites, rate holders, hook functions) is reused while the models hold
        the same modules: a decorated step function enters at every call, and walking the modules to check
        that costs a fraction of a discovery. :meth:`rescan` forces a new plan (e.g. after :func:`frozen`)."""
        key = tuple((label, _module_ids(model)) for label, model in models.items())
        if self._plan is None or self._plan[0] != key:
            self._plan = (key, *self._make_plan(models))
            self._retired = set()
        _, self._sites, self._holders, hooks = self._plan
        for s in self._sites:
            s.last_train_epoch = -1
            s.frozen_layer = None
        for register, fn, always, owner in hooks:
            if owner in self._retired:
                continue
            handle = register(fn, always_call=True) if always else register(fn)
            self._handles.append(handle)
            if owner is not None:
                self._owner_pres[owner] = handle

    def _make_plan(
        self, models: dict[str, nn.Module]
    ) -> tuple[list[Site], dict[int, list[Site]], list[tuple[Any, Any, bool, int | None]]]:
        sites, holders = discover(models)
        self._apply_allow(sites)
        for s in sites:
            s.done = {k for k in KINDS if (s.path, k) in self._reported}
        hooks: list[tuple[Any, Any, bool, int | None]] = []
        by_root: dict[int, list[Site]] = {}
        for s in sites:
            root = s.ancestors[-1] if s.ancestors else s.module
            by_root.setdefault(id(root), []).append(s)
            if s.called and not (s.allow_on and s.allow_off):
                hooks.append((s.module.register_forward_hook, _SiteHook(self, s), False, None))
        owners = {id(s.owner): s.owner for ss in holders.values() for s in ss if s.owner is not None}
        for key, owner in owners.items():
            if all(s.allow_on and s.allow_off for s in holders[key]):
                continue
            hooks.append((owner.register_forward_pre_hook, _OwnerPre(self, owner, holders[key]), False, key))
        for model in models.values():
            mine = by_root.get(id(model), [])
            if mine:
                hooks.append((model.register_forward_hook, _RootPost(self, model, mine), False, None))
        return sites, holders, hooks

    def _uninstall(self) -> None:
        for h in (*self._handles, *self._owner_posts.values()):
            h.remove()
        self._handles.clear()
        self._owner_posts.clear()
        self._owner_pres.clear()
        self._stop_recording()
        self._pending.clear()
        self._armed.clear()
        self._sites, self._holders = [], {}

    # -- rate holders, checked through their owner's forward (hooks: _OwnerPre, _OwnerPost) --

    def _retire(self, owner: nn.Module) -> None:
        self._retired.add(id(owner))
        handle = self._owner_pres.pop(id(owner), None)
        if handle is not None:
            handle.remove()

    def _suspicious(self, holders: list[Site]) -> bool:
        """A holder whose rate would act in the wrong mode: training mode without gradients, or eval mode
        with gradients outside a frozen layer."""
        grad = torch.is_grad_enabled()
        for s in holders:
            if grad:
                if s.module.training or OFF_IN_TRAINING in s.done or s.allow_off:
                    continue
                if s.frozen_layer is None:
                    s.frozen_layer = in_frozen_layer(s)
                if s.frozen_layer:
                    continue
            elif not s.module.training or ON_IN_EVALUATION in s.done or s.allow_on:
                continue
            if s.p() > 0:
                return True
        return False

    def _owner_post(self, owner: nn.Module, output: Any) -> None:
        key = id(owner)
        handle = self._owner_posts.pop(key, None)
        if handle is not None:
            handle.remove()
        if self._recorder is None:
            return
        calls = [c for c in self._calls if c[0] == key]
        if calls and not self._paused:
            self._attribute(owner, calls, output)
        if self._recorder_owner == key:
            self._stop_recording()

    def _attribute(self, owner: nn.Module, calls: list[tuple[int, str, float, bool]], output: Any) -> None:
        """Link the owner's dropout calls to the rate holders they used."""
        unused = [s for s in self._holders.get(id(owner), []) if not (s.called and id(s.module) in self._called)]
        name = type(owner).__name__
        if not torch.is_grad_enabled():
            for _, func, p, training in calls:
                if not training or p <= 0:
                    continue
                for s in unused:
                    if (
                        s.module.training
                        and ON_IN_EVALUATION not in s.done
                        and not s.allow_on
                        and math.isclose(s.p(), p, rel_tol=1e-9, abs_tol=1e-12)
                    ):
                        self._emit(ON_IN_EVALUATION, s, p, _no_grad_context(), how=f"rate read by {name} ({func})")
            return
        if not any(not training or p == 0 for _, _, p, training in calls):
            return
        off = [s for s in unused if not s.module.training and s.p() > 0]
        off = [s for s in off if OFF_IN_TRAINING not in s.done and not s.allow_off]
        if off:
            func = calls[0][1]
            self._watch_backward(output, tuple(off), how=f"rate read by {name} ({func})")

    def _start_recording(self, owner: nn.Module) -> None:
        if self._recorder is not None:
            return
        self._recorder = _Recorder(self._calls)
        self._recorder_owner = id(owner)
        self._recorder.__enter__()

    def _stop_recording(self) -> None:
        if self._recorder is None:
            return
        recorder, self._recorder, self._recorder_owner = self._recorder, None, None
        self._calls.clear()
        self._called.clear()
        recorder.__exit__(None, None, None)

    # -- backward --

    def _watch_backward(self, output: Any, sites: tuple[Site, ...], how: str = "called") -> None:
        live = []
        for s in sites:
            if s.frozen_layer is None:
                s.frozen_layer = in_frozen_layer(s)
            if not s.frozen_layer:
                live.append(s)
        tensor = _first_tensor(output, lambda t: t.requires_grad)
        if not live or tensor is None:
            return
        self._arm()
        chosen = tuple(live)

        def through(_grad: Any) -> None:
            task = torch._C._current_graph_task_id()
            self._pending.setdefault(task, set()).update((s, how) for s in chosen)

        tensor.register_hook(through)

    def _arm(self) -> None:
        """Once: a hook on every trainable parameter that says a backward accumulated into it."""
        for model in (self._models or {}).values():
            for p in model.parameters():
                if p.requires_grad and id(p) not in self._armed:
                    self._armed.add(id(p))
                    self._handles.append(p.register_post_accumulate_grad_hook(self._accumulated))

    def _accumulated(self, _param: Any) -> None:
        if not self._pending or self._paused:
            return
        found = self._pending.pop(torch._C._current_graph_task_id(), None)
        if not found:
            return
        for s, how in sorted(found, key=lambda x: x[0].path):
            if OFF_IN_TRAINING not in s.done:
                self._emit(OFF_IN_TRAINING, s, s.p(), "in a step whose backward trains parameters", how=how)

    # -- reporting --

    def _emit(self, kind: str, s: Site, p: float, context: str, how: str = "called") -> None:
        s.done.add(kind)
        key = (s.path, kind)
        if key in self._reported:
            return
        self._reported.add(key)
        where = _user_location()
        kb_id = KINDS[kind][0]
        message = _message(kind, s, p, context, how)
        event = WatchEvent(kind, kb_id, s.path, s.module_class, p, how, context, message, where)
        self._events.append(event)
        if self._warn:
            filename, _, line = (where or "<unknown>:0").rpartition(":")
            warnings.warn_explicit(message, DropoutModeWarning, filename, int(line or 0), module="advisor.watch")


def _message(kind: str, s: Site, p: float, context: str, how: str) -> str:
    what = f"'{s.path}' ({s.module_class}, p={p:g}{'' if how == 'called' else ', ' + how})"
    if kind == ON_IN_EVALUATION:
        return (
            f"dropout is on during evaluation: {what} is in training mode {context}; torch.no_grad() and "
            "inference_mode() do not switch dropout off. Fix: call model.eval() before evaluating and "
            "model.train() afterwards (an EMA or teacher copy: call .eval() on it once). If this is on purpose "
            f"(MC dropout), allow it: allow=['{s.path}']. See: dropout-advisor explain DRP320"
        )
    return (
        f"dropout is off during training: {what} is in eval mode {context}. Fix: call model.train() at the "
        "start of every training step (a validation call that ends in eval mode, or from_pretrained(), which "
        "returns models in eval mode, leaves it off; Lightning >= 2.2 keeps each submodule's mode). If this "
        f"part is frozen on purpose, mark it with advisor.frozen(module) or allow it: allow=['{s.path}']. "
        "See: dropout-advisor explain DRP321"
    )


def _no_grad_context() -> str:
    return "under torch.inference_mode()" if torch.is_inference_mode_enabled() else "under torch.no_grad()"


def _user_location() -> str | None:
    """'file.py:LINE' of the line that ran the model: the innermost frame outside torch, this tool and
    Lightning that is not itself a module's ``forward`` (the mode mistake is where the model is called,
    ``model(x)`` or ``loss.backward()``, not inside the model's code)."""
    frame: Any = sys._getframe(2)
    fallback = None
    while frame is not None:
        name = frame.f_code.co_filename
        if not (
            name.startswith((_TORCH_DIR, _OUR_DIR, "<frozen"))
            or f"{os.sep}lightning{os.sep}" in name
            or f"{os.sep}pytorch_lightning{os.sep}" in name
        ):
            where = f"{name}:{frame.f_lineno}"
            code = frame.f_code
            first = frame.f_locals.get(code.co_varnames[0]) if code.co_argcount else None
            if not (code.co_name == "forward" and isinstance(first, nn.Module)):
                return where
            fallback = fallback or where
        frame = frame.f_back
    return fallback


def _first_tensor(obj: Any, pred: Callable[[torch.Tensor], bool], depth: int = 0) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj if pred(obj) else None
    if depth > 3:
        return None
    if isinstance(obj, (tuple, list)):
        items: Iterable[Any] = obj
    elif isinstance(obj, Mapping):
        items = obj.values()
    else:
        return None
    for item in items:
        found = _first_tensor(item, pred, depth + 1)
        if found is not None:
            return found
    return None


def _any_tensor(obj: Any, pred: Callable[[torch.Tensor], bool]) -> bool:
    return _first_tensor(obj, pred) is not None


def _module_ids(model: nn.Module) -> tuple[int, ...]:
    """The ids of every module inside ``model``, in a fixed order (a cheaper walk than named_modules)."""
    ids = []
    stack = [model]
    while stack:
        module = stack.pop()
        ids.append(id(module))
        stack.extend(m for m in module._modules.values() if m is not None)
    return tuple(ids)


def _module_arguments(signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        bound = signature.bind_partial(*args, **kwargs)
    except TypeError:
        return {}
    found = {name: value for name, value in bound.arguments.items() if isinstance(value, nn.Module)}
    if len(found) == 1:
        return {"": next(iter(found.values()))}
    return found


def watch(*models: nn.Module | Mapping[str, nn.Module], allow: Iterable[str] = (), warn: bool = True) -> Watch:
    """Watch ``models`` for dropout mode bugs at run time; a context manager and a decorator.

    ``with advisor.watch(model): train(...)`` or ``@advisor.watch(model)`` on a train/eval function
    (``@advisor.watch()`` watches the function's nn.Module arguments). Several models are labelled by
    class name (``watch(student, teacher)``) or by key (``watch({'student': s, 'teacher': t})``), and the
    label prefixes their module paths. ``allow`` takes module globs (``'backbone.*'``, everything inside
    it too) optionally with a kind (``'mc_head:dropout-on-in-evaluation'``). ``warn=False`` only records
    events (``.events``). Each module path and kind is reported once per Watch object.
    Raises :class:`~advisor.errors.UsageError` for something that is not an nn.Module or a bad allow entry.
    """
    found: dict[str, nn.Module] = {}
    flat: list[tuple[str | None, Any]] = []
    for m in models:
        if isinstance(m, Mapping):
            flat.extend((str(k), v) for k, v in m.items())
        else:
            flat.append((None, m))
    for _, m in flat:
        if not isinstance(m, nn.Module):
            raise UsageError(
                f"watch() needs torch.nn.Module objects, got {type(m).__name__}", hint="pass the model: watch(model)"
            )
    if len(flat) == 1 and flat[0][0] is None:
        found[""] = flat[0][1]
    else:
        counts: dict[str, int] = {}
        for label, m in flat:
            name = label if label is not None else type(m).__name__
            counts[name] = counts.get(name, 0) + 1
            found[name if counts[name] == 1 else f"{name}#{counts[name] - 1}"] = m
    return Watch(found if found else None, allow, warn)
