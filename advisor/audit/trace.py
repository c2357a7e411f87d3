"""Record what a model actually executes: module calls (forward hooks) and torch calls (TorchFunctionMode).

One :class:`Tracer` run is one forward pass. It records, in execution order, a flat list of
:class:`Event` objects at the granularity the rules need: every call of an *atomic* module (a module
with no children, or one whose internals are not worth seeing, such as ``nn.MultiheadAttention`` and
``nn.LSTM``) and every torch call made directly in the forward of a non-atomic module (``x + y``,
``x.view(...)``, ``F.dropout(...)``). Each event knows which earlier event produced each of its
tensor inputs, so the rules can follow data flow (dropout -> view -> BatchNorm) instead of the order
in which ``__init__`` happened to register the layers.

Separately, every dropout-like torch call (``F.dropout*``, ``F.scaled_dot_product_attention`` with
``dropout_p``, ``F.multi_head_attention_forward``) and every random-number call (``torch.rand``,
``Tensor.bernoulli_`` ...) is logged with its arguments and the module whose forward made it, whether
or not it sits inside an atomic module.

torch is imported lazily by callers; this module imports it at the top because only the auditor
imports it, and the auditor always needs torch.
"""

from __future__ import annotations

import inspect
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_OUR_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

# ---- vocabularies -------------------------------------------------------------------------------

#: functional dropout: func -> (display name, dropout kind, default of `training`)
_DROPOUT_FUNCS: dict[Any, tuple[str, str, bool]] = {
    F.dropout: ("F.dropout", "dropout", True),
    F.dropout1d: ("F.dropout1d", "dropout1d", True),
    F.dropout2d: ("F.dropout2d", "dropout2d", True),
    F.dropout3d: ("F.dropout3d", "dropout3d", True),
    F.alpha_dropout: ("F.alpha_dropout", "alpha-dropout", False),
    F.feature_alpha_dropout: ("F.feature_alpha_dropout", "feature-alpha-dropout", False),
}
#: the ATen-level spellings (torch.dropout(x, p, train)), all positional
_TORCH_DROPOUT_FUNCS: dict[Any, tuple[str, str]] = {}
for _name, _kind in (
    ("dropout", "dropout"),
    ("dropout_", "dropout"),
    ("feature_dropout", "dropout2d"),
    ("feature_dropout_", "dropout2d"),
    ("alpha_dropout", "alpha-dropout"),
    ("alpha_dropout_", "alpha-dropout"),
    ("feature_alpha_dropout", "feature-alpha-dropout"),
    ("feature_alpha_dropout_", "feature-alpha-dropout"),
    ("native_dropout", "dropout"),
):
    if hasattr(torch, _name):
        _TORCH_DROPOUT_FUNCS[getattr(torch, _name)] = (f"torch.{_name}", _kind)

_SDPA = F.scaled_dot_product_attention
_MHA_FORWARD = F.multi_head_attention_forward

#: random-number calls; the first group is what dropout-like code uses to draw masks
MASK_RANDOM = frozenset({"bernoulli", "bernoulli_", "rand", "rand_like", "uniform_"})
RANDOM = MASK_RANDOM | frozenset(
    {
        "randn",
        "randn_like",
        "normal",
        "normal_",
        "randint",
        "randint_like",
        "randperm",
        "multinomial",
        "random_",
        "exponential_",
        "geometric_",
        "cauchy_",
        "log_normal_",
        "poisson",
    }
)

_SHAPE_ONLY = frozenset(
    {
        "view",
        "reshape",
        "flatten",
        "unflatten",
        "permute",
        "transpose",
        "t",
        "contiguous",
        "squeeze",
        "unsqueeze",
        "expand",
        "expand_as",
        "view_as",
        "reshape_as",
        "movedim",
        "moveaxis",
        "swapaxes",
        "swapdims",
        "narrow",
        "getitem",
        "get",
        "clone",
        "detach",
        "to",
        "type",
        "type_as",
        "float",
        "half",
        "double",
        "bfloat16",
        "split",
        "chunk",
        "unbind",
        "select",
        "identity",
    }
)
_ACTIVATIONS = frozenset(
    {
        "relu",
        "relu6",
        "gelu",
        "silu",
        "sigmoid",
        "tanh",
        "elu",
        "selu",
        "celu",
        "leaky_relu",
        "hardtanh",
        "hardswish",
        "hardsigmoid",
        "mish",
        "softplus",
        "softsign",
        "prelu",
        "rrelu",
        "glu",
        "logsigmoid",
        "tanhshrink",
        "threshold",
    }
)
_NAME_OPS: dict[str, str] = {
    "linear": "linear",
    "bilinear": "linear",
    "matmul": "matmul",
    "mm": "matmul",
    "bmm": "matmul",
    "einsum": "matmul",
    "baddbmm": "matmul",
    "addmm": "matmul",
    "spmm": "matmul",
    "batch_norm": "batchnorm",
    "layer_norm": "layernorm",
    "group_norm": "layernorm",
    "instance_norm": "layernorm",
    "rms_norm": "layernorm",
    "normalize": "layernorm",
    "embedding": "embedding",
    "embedding_bag": "embedding",
    "softmax": "softmax",
    "log_softmax": "softmax",
    "softmin": "softmax",
    "scaled_dot_product_attention": "attention",
    "multi_head_attention_forward": "attention",
    "add": "add",
    "sub": "add",
    "iadd": "add",
    "isub": "add",
    "radd": "add",
    "rsub": "add",
    "mul": "mul",
    "div": "mul",
    "truediv": "mul",
    "imul": "mul",
    "itruediv": "mul",
    "rmul": "mul",
    "rtruediv": "mul",
    "cat": "cat",
    "stack": "cat",
    "concat": "cat",
    "lstm": "rnn-layer",
    "gru": "rnn-layer",
    "rnn_tanh": "rnn-layer",
    "rnn_relu": "rnn-layer",
}

#: ops whose output autograd keeps for backward: an in-place dropout on it breaks ``backward()``
#: (checked with torch 2.13; LSTM on CPU, GRU/RNN with cuDNN)
SAVES_OUTPUT = frozenset({"ReLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "LSTM", "GRU", "RNN"})
SAVES_OUTPUT_FUNCS = frozenset({"relu", "sigmoid", "tanh", "softmax", "log_softmax", "exp", "lstm", "gru"})
SAVES_OUTPUT_IF_INPLACE = frozenset({"LeakyReLU", "ELU", "CELU"})

_DROPPATH_NAME = re.compile(r"drop_?path|stochastic_?depth", re.I)
_DROPBLOCK_NAME = re.compile(r"drop_?block", re.I)
_WEIGHTDROP_NAME = re.compile(r"weight_?drop|drop_?connect", re.I)
_DROPOUT_NAME = re.compile(r"dropout", re.I)
_RATE_ATTRS = ("p", "drop_prob", "drop_rate", "dropout", "prob", "rate", "dropout_p", "weight_p", "keep_prob")


def normalize_name(name: str) -> str:
    """'__iadd__' -> 'iadd', 'relu_' -> 'relu', 'bernoulli_' stays as is for random bookkeeping."""
    return name.strip("_")


def func_op(name: str) -> str:
    """The operation category of a torch call, by its name."""
    n = normalize_name(name)
    if n in _SHAPE_ONLY:
        return "shape"
    if n in _ACTIVATIONS:
        return "activation"
    if n in _NAME_OPS:
        return _NAME_OPS[n]
    if n.startswith(("conv", "conv_transpose")):
        return "conv"
    if "pool" in n:
        return "pool"
    return n or "op"


def module_op(m: nn.Module) -> str:
    """The operation category of a module call."""
    if isinstance(m, nn.modules.dropout._DropoutNd):
        return "dropout"
    if isinstance(m, (nn.Linear, nn.Bilinear, nn.LazyLinear)):
        return "linear"
    if isinstance(m, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return "batchnorm"
    if isinstance(m, (nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm, nn.RMSNorm)):
        return "layernorm"
    if isinstance(m, (nn.Embedding, nn.EmbeddingBag)):
        return "embedding"
    if isinstance(m, (nn.Softmax, nn.LogSoftmax, nn.Softmin)):
        return "softmax"
    if isinstance(m, nn.MultiheadAttention):
        return "attention"
    if isinstance(m, nn.RNNBase):
        return "rnn-layer"
    if isinstance(m, (nn.Flatten, nn.Unflatten, nn.Identity)):
        return "shape"
    mod = type(m).__module__
    if mod == "torch.nn.modules.activation":
        return "activation"
    if mod == "torch.nn.modules.pooling":
        return "pool"
    if is_candidate(m):
        return "dropout"  # provisional: the analysis relabels candidates that turn out not to drop
    return "module"


def is_torch_class(m: nn.Module) -> bool:
    return type(m).__module__.startswith("torch.")


def is_candidate(m: nn.Module) -> bool:
    """A module written outside torch that may be a dropout site: a leaf whose class name says it drops.

    Whether it is one is decided by behaviour (see :class:`Probe`); containers of layers never are.
    """
    if is_torch_class(m) or next(iter(m.children()), None) is not None:
        return False
    return dropout_like_kind_from_name(type(m).__name__) is not None


def dropout_like_kind(m: nn.Module) -> str | None:
    """The dropout kind of a torch dropout module, else None (MHA, RNNs and user classes: see the analysis)."""
    if isinstance(m, nn.modules.dropout._DropoutNd):
        if isinstance(m, nn.FeatureAlphaDropout):
            return "feature-alpha-dropout"
        if isinstance(m, nn.AlphaDropout):
            return "alpha-dropout"
        if isinstance(m, nn.Dropout1d):
            return "dropout1d"
        if isinstance(m, nn.Dropout2d):
            return "dropout2d"
        if isinstance(m, nn.Dropout3d):
            return "dropout3d"
        return "dropout"
    return None


def dropout_like_kind_from_name(name: str) -> str | None:
    """Dropout kind suggested by a class or function name (DropPath, drop_path, LockedDropout ...)."""
    if _DROPPATH_NAME.search(name):
        return "drop-path"
    if _DROPBLOCK_NAME.search(name):
        return "dropblock"
    if _WEIGHTDROP_NAME.search(name):
        return "weight-drop"
    if _DROPOUT_NAME.search(name):
        # user classes such as LockedDropout, EmbeddingDropout, SharedDropout
        return "locked-dropout" if "lock" in name.lower() else "dropout"
    return None


def module_rate(m: nn.Module) -> float | None:
    """The drop probability a dropout-like module was built with, if it stores one under a usual name."""
    if isinstance(m, (nn.MultiheadAttention, nn.RNNBase)):
        return float(m.dropout)
    for attr in _RATE_ATTRS:
        value = m.__dict__.get(attr)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


_STDLIB_DIR = os.path.dirname(os.__file__) + os.sep


def _internal(fname: str) -> bool:
    if fname.startswith("<") or fname.startswith(_TORCH_DIR) or fname.startswith(_OUR_DIR):
        return True
    return fname.startswith(_STDLIB_DIR) and "-packages" not in fname


def user_frame() -> tuple[str, int, str] | None:
    """(file, line, function) of the innermost caller outside torch, the stdlib and this package."""
    frame: Any = sys._getframe(1)
    while frame is not None:
        fname = frame.f_code.co_filename
        if not _internal(fname):
            return fname, frame.f_lineno, frame.f_code.co_name
        frame = frame.f_back
    return None


def iter_tensors(obj: Any, depth: int = 0) -> Iterator[torch.Tensor]:
    """Every tensor inside nested tuples, lists, dicts and dataclass-like outputs (HF ModelOutput)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth > 6:
        return
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from iter_tensors(o, depth + 1)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from iter_tensors(o, depth + 1)


def shape_of(t: torch.Tensor) -> tuple[int, ...]:
    try:
        return tuple(t.shape)
    except Exception:  # nested tensors
        return ()


# ---- shape-only kernels for the meta device ------------------------------------------------------
# torch's meta kernels for attention and normalization are decompositions written in Python; on an
# 80-layer model they cost most of a forward pass. On meta only shapes exist, so these compute the output
# shape directly, after the checks that matter; anything unusual falls through to torch's own kernel.


def _fast_sdpa(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    b = _bind(_SDPA, args, kwargs)
    q, k, v = b.get("query"), b.get("key"), b.get("value")
    if not (isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor) and isinstance(v, torch.Tensor)):
        return None
    if b.get("enable_gqa"):
        return None
    if q.dim() < 2 or q.dim() != k.dim() or k.dim() != v.dim():
        return None
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2] or q.shape[:-2] != k.shape[:-2]:
        return None
    return torch.empty((*q.shape[:-1], v.shape[-1]), dtype=q.dtype, device=q.device)


def _fast_norm(func: Any) -> Callable[[tuple[Any, ...], dict[str, Any]], torch.Tensor | None]:
    def run(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
        b = _bind(func, args, kwargs)
        x, shape = b.get("input"), b.get("normalized_shape")
        if not isinstance(x, torch.Tensor) or shape is None:
            return None
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if tuple(x.shape[len(x.shape) - len(shape) :]) != shape:
            return None
        return torch.empty_like(x)

    return run


def _fast_softmax(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    x = args[0] if args else kwargs.get("input")
    if not isinstance(x, torch.Tensor):
        return None
    dtype = kwargs.get("dtype") or (args[3] if len(args) > 3 else None)
    return torch.empty_like(x, dtype=dtype or x.dtype)


_META_FAST: dict[Any, Callable[[tuple[Any, ...], dict[str, Any]], torch.Tensor | None]] = {
    _SDPA: _fast_sdpa,
    F.layer_norm: _fast_norm(F.layer_norm),
    F.softmax: _fast_softmax,
    F.log_softmax: _fast_softmax,
}
if hasattr(F, "rms_norm"):
    _META_FAST[F.rms_norm] = _fast_norm(F.rms_norm)


def _meta_dropout(x: torch.Tensor, inplace: bool) -> torch.Tensor:
    return x if inplace else torch.empty_like(x)


# ---- records ------------------------------------------------------------------------------------


@dataclass
class Event:
    """One atomic module call or one torch call made directly in a non-atomic forward."""

    idx: int
    kind: str  # "module" | "function"
    op: str  # category: linear, conv, dropout, activation, shape, add, ...
    name: str  # class name ("Linear") or call name ("F.dropout", "view")
    owner: str  # module path: the module itself (module events) or the module whose forward called it
    module: nn.Module | None
    producers: list[int]  # producer event index per tensor input; -1 = model input, -2 = parameter/constant
    in_shapes: list[tuple[int, ...]]
    out_shapes: list[tuple[int, ...]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DropCall:
    """One call of a dropout-like torch function (or a random-number function)."""

    func: str  # "F.dropout", "F.scaled_dot_product_attention", "torch.rand" ...
    kind: str  # dropout kind; "random" for random-number calls
    owner: str  # innermost module path
    event: int  # the event the call belongs to (its own event, or the enclosing atomic module call)
    p: float | None
    training: bool | None
    inplace: bool
    in_shape: tuple[int, ...]
    location: tuple[str, int, str] | None
    on_parameter: bool = False
    in_dropout_module: bool = False  # made by torch's own nn.Dropout* forward
    substituted: str | None = None  # why the auditor ran an identity instead of the call


@dataclass
class ModuleCall:
    path: str
    module: nn.Module
    in_shapes: list[tuple[int, ...]]
    atomic: bool
    event: int | None = None
    fp_inputs: list[torch.Tensor] | None = None
    span: Span | None = None
    probe: torch.Tensor | None = None  # a copy of the first input of a candidate dropout module
    same_shape: bool = False


@dataclass
class Span:
    """One module call as a slice of the event list: events ``start <= idx < end`` ran inside it."""

    start: int
    in_producers: list[int]
    end: int = -1
    out_producers: list[int] = field(default_factory=list)


#: what a candidate module did to its input in one call (see Tracer._probe)
IDENTITY, DROPS, OTHER, UNKNOWN = "identity", "drops", "other", "unknown"


@dataclass
class Trace:
    """The result of one traced forward pass."""

    training: bool
    events: list[Event]
    drop_calls: list[DropCall]
    calls: dict[str, int]  # module path -> number of calls
    outputs: list[int]  # producer events of the model's output tensors
    input_count: int
    fingerprints: dict[tuple[str, int], tuple[list[torch.Tensor], list[torch.Tensor]]]
    consumers: dict[int, list[int]] = field(default_factory=dict)
    spans: dict[str, list[Span]] = field(default_factory=dict)  # module path -> its calls
    behaviour: dict[str, set[str]] = field(default_factory=dict)  # candidate module path -> what its calls did

    def build_consumers(self) -> None:
        cons: dict[int, list[int]] = {}
        for ev in self.events:
            for p in ev.producers:
                if p >= 0:
                    cons.setdefault(p, []).append(ev.idx)
        self.consumers = cons


class TraceFailure(Exception):
    """The forward raised; carries the module stack at the time."""

    def __init__(self, original: BaseException, stack: list[tuple[str, nn.Module, list[tuple[int, ...]]]]):
        super().__init__(str(original))
        self.original = original
        self.stack = stack


# ---- the tracer ---------------------------------------------------------------------------------


class _Mode(TorchFunctionMode):
    def __init__(self, tracer: Tracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        tr = self.tracer
        if tr.busy:
            return func(*args, **kwargs)
        return tr.on_call(func, args, kwargs)


@dataclass
class _Pending:
    """One torch call between its bookkeeping before and after."""

    func: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    raw_name: str
    inplace: bool
    dcall: DropCall | None
    atomic: ModuleCall | None
    inputs: list[torch.Tensor] = field(default_factory=list)
    producers: list[int] = field(default_factory=list)
    out: Any = None


class Tracer:
    """Hooks every module of ``root`` and records one forward pass. Use :meth:`run`."""

    def __init__(
        self,
        root: nn.Module,
        paths: dict[int, str],
        *,
        fingerprint: bool = False,
        fingerprint_budget: int = 20_000_000,
        fast_meta: bool = False,
    ) -> None:
        self.root = root
        self.paths = paths
        self.fingerprint = fingerprint
        self.fingerprint_budget = fingerprint_budget
        self.fast_meta = fast_meta
        self.busy = False
        self.stack: list[ModuleCall] = []
        self.atomic_depth = 0
        self.events: list[Event] = []
        self.drop_calls: list[DropCall] = []
        self.calls: dict[str, int] = {}
        self.producer: dict[int, int] = {}
        self.keep: list[Any] = []  # keeps tensors alive so that their id() is not reused in this pass
        self.fingerprints: dict[tuple[str, int], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        self.fp_used = 0
        self.fp_over = False
        self.failure: BaseException | None = None  # the exception a forward raised, and the stack then
        self.failure_stack: list[tuple[str, nn.Module, list[tuple[int, ...]]]] = []
        self.spans: dict[str, list[Span]] = {}
        self.behaviour: dict[str, set[str]] = {}
        self._candidate: dict[int, bool] = {}

    def candidate(self, m: nn.Module) -> bool:
        hit = self._candidate.get(id(m))
        if hit is None:
            hit = self._candidate[id(m)] = is_candidate(m)
        return hit

    # -- helpers --
    def _producers(self, tensors: list[torch.Tensor]) -> list[int]:
        out = []
        for t in tensors:
            p = self.producer.get(id(t))
            if p is None:
                p = -2
            out.append(p)
        return out

    def _owner(self) -> str:
        return self.stack[-1].path if self.stack else ""

    def _enclosing_atomic(self) -> ModuleCall | None:
        for frame in self.stack:
            if frame.atomic:
                return frame
        return None

    def _new_event(self, **kw: Any) -> Event:
        ev = Event(idx=len(self.events), **kw)
        self.events.append(ev)
        return ev

    def _mark_outputs(self, ev: Event, out: Any) -> None:
        tensors = list(iter_tensors(out))
        ev.out_shapes = [shape_of(t) for t in tensors]
        for t in tensors:
            self.producer[id(t)] = ev.idx
            self.keep.append(t)

    # -- module hooks --
    def pre_hook(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        self.busy = True
        try:
            path = self.paths.get(id(module), "?")
            self.calls[path] = self.calls.get(path, 0) + 1
            inputs = list(iter_tensors(args)) + list(iter_tensors(kwargs))
            atomic = _is_atomic(module)
            frame = ModuleCall(path, module, [shape_of(t) for t in inputs], atomic)
            if self.atomic_depth == 0:
                producers = self._producers(inputs)
                frame.span = Span(len(self.events), producers)
                self.spans.setdefault(path, []).append(frame.span)
                if atomic:
                    ev = self._new_event(
                        kind="module",
                        op=module_op(module),
                        name=type(module).__name__,
                        owner=path,
                        module=module,
                        producers=producers,
                        in_shapes=frame.in_shapes,
                    )
                    frame.event = ev.idx
                if inputs and self.candidate(module):
                    x = inputs[0]
                    if not x.is_meta and (x.is_floating_point() or x.is_complex()) and x.numel() <= 50_000_000:
                        frame.probe = x.detach().clone()
            if atomic:
                self.atomic_depth += 1
            if self.fingerprint:
                frame.fp_inputs = self._snap(inputs)
            self.stack.append(frame)
        finally:
            self.busy = False

    def post_hook(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        self.busy = True
        try:
            depth = next((i for i in range(len(self.stack) - 1, -1, -1) if self.stack[i].module is module), None)
            if depth is None:
                return
            failed = output is None and sys.exc_info()[1]  # always_call: this forward raised
            if failed and failed is not self.failure:
                self.failure = failed
                self.failure_stack = [(f.path, f.module, f.in_shapes) for f in self.stack]
            while len(self.stack) > depth:
                frame = self.stack.pop()
                if frame.atomic:
                    self.atomic_depth -= 1
            if failed:
                return
            if frame.event is not None:
                self._mark_outputs(self.events[frame.event], output)
            if frame.span is not None:
                frame.span.end = len(self.events)
                frame.span.out_producers = [self.producer.get(id(t), -2) for t in iter_tensors(output)]
                if self.candidate(module):
                    self.behaviour.setdefault(frame.path, set()).add(self._probe(frame, output))
            if self.fingerprint:
                outs = self._snap(list(iter_tensors(output)))
                self.fingerprints[(frame.path, self.calls[frame.path])] = (frame.fp_inputs or [], outs)
        finally:
            self.busy = False

    @staticmethod
    def _probe(frame: ModuleCall, output: Any) -> str:
        """IDENTITY (output == input), DROPS (every element zeroed or scaled by one factor), OTHER, UNKNOWN."""
        outs = list(iter_tensors(output))
        if not outs or not frame.in_shapes or shape_of(outs[0]) != frame.in_shapes[0]:
            return OTHER
        x, y = frame.probe, outs[0]
        if x is None or y.is_meta:
            return UNKNOWN
        if torch.equal(x, y):
            return IDENTITY
        kept = (y != 0) & (x != 0)
        zeroed = (y == 0) & (x != 0)
        if bool(((y != 0) & (x == 0)).any()):
            return OTHER
        if not bool(kept.any()):
            return DROPS if bool(zeroed.any()) else OTHER
        ratio = y[kept] / x[kept]
        first = ratio.flatten()[0]
        if bool(torch.allclose(ratio, first.expand_as(ratio), rtol=1e-4, atol=1e-6)) and float(first.real) > 0:
            return DROPS
        # per-sample factors (drop-path with a per-sample keep rescale is still one factor; this is not)
        return OTHER

    def _snap(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        snaps = []
        for t in tensors:
            if t.is_floating_point() or t.is_complex():
                n = t.numel()
                if self.fp_used + n > self.fingerprint_budget:
                    self.fp_over = True
                    continue
                self.fp_used += n
                snaps.append(t.detach().clone())
        return snaps

    # -- torch calls --
    def on_call(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # Bookkeeping runs with torch functions disabled (our own tensor calls must not be re-dispatched
        # through the modes below us); the model's call itself runs with them.
        self.busy = True
        try:
            with torch._C.DisableTorchFunction():
                call = self._prepare(func, args, kwargs)
            if call.out is None:
                self.busy = False
                try:
                    call.out = call.func(*call.args, **call.kwargs)
                except Exception as exc:
                    exc._advisor_from_model = True  # type: ignore[attr-defined]  # the model's error, not ours
                    raise
                finally:
                    self.busy = True
            with torch._C.DisableTorchFunction():
                return self._finish(call)
        finally:
            self.busy = False

    def _prepare(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Pending:
        raw_name = getattr(func, "__name__", "") or ""
        inplace = (raw_name.endswith("_") and not raw_name.startswith("_")) or kwargs.get("inplace") is True
        drop = _DROPOUT_FUNCS.get(func)
        aten = None if drop is not None else _TORCH_DROPOUT_FUNCS.get(func)
        dcall: DropCall | None = None
        if drop is not None or aten is not None:
            func, args, kwargs, dcall = self._dropout_call(func, args, kwargs, drop, aten)
        elif func is _SDPA or func is _MHA_FORWARD:
            dcall = self._attention_call(func, args, kwargs)
        elif raw_name in RANDOM:
            inside = self.stack[-1].module if self.stack else None
            dcall = DropCall(
                func=f"torch.{raw_name}" if not raw_name.endswith("_") else f"Tensor.{raw_name}",
                kind="random",
                owner=self._owner(),
                event=-1,
                p=None,
                training=None,
                inplace=raw_name.endswith("_"),
                in_shape=(),
                location=None if isinstance(inside, nn.modules.dropout._DropoutNd) else user_frame(),
            )
        call = _Pending(func, args, kwargs, raw_name, inplace, dcall, self._enclosing_atomic())
        if call.atomic is None:
            call.inputs = list(iter_tensors(args)) + list(iter_tensors(kwargs))
            call.producers = self._producers(call.inputs)
        if self.fast_meta:
            if dcall is not None and dcall.kind not in ("random", "attention-dropout") and func is not _identity:
                x = args[0] if args else kwargs.get("input")
                if isinstance(x, torch.Tensor) and x.is_meta:
                    call.func, call.args, call.kwargs = _meta_dropout, (x, dcall.inplace), {}
            else:
                fast = _META_FAST.get(func)
                if fast is not None:
                    call.out = fast(args, kwargs)
        return call

    def _finish(self, call: _Pending) -> Any:
        out, dcall = call.out, call.dcall
        if call.atomic is not None:
            if dcall is not None:
                dcall.event = call.atomic.event if call.atomic.event is not None else -1
                self.drop_calls.append(dcall)
            return out
        if dcall is None and not any(True for _ in iter_tensors(out)):
            return out
        name = dcall.func if dcall is not None and dcall.kind != "random" else normalize_name(call.raw_name)
        op = "dropout" if dcall is not None and dcall.kind not in ("random", "attention-dropout") else None
        ev = self._new_event(
            kind="function",
            op=op or func_op(call.raw_name),
            name=name,
            owner=self._owner(),
            module=None,
            producers=call.producers,
            in_shapes=[shape_of(t) for t in call.inputs],
        )
        if call.inplace:
            ev.extra["inplace"] = True
        if any(isinstance(t, nn.Parameter) for t in call.inputs):
            ev.extra["parameter"] = True
        self._mark_outputs(ev, out)
        if dcall is not None:
            dcall.event = ev.idx
            self.drop_calls.append(dcall)
        return out

    def _dropout_call(
        self,
        func: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        drop: tuple[str, str, bool] | None,
        aten: tuple[str, str] | None,
    ) -> tuple[Any, tuple[Any, ...], dict[str, Any], DropCall]:
        if drop is not None:
            display, kind, default_training = drop
            bound = _bind(func, args, kwargs)
            x = bound.get("input")
            p = bound.get("p", 0.5)
            training = bool(bound.get("training", default_training))
            inplace = bool(bound.get("inplace", False))
        else:
            assert aten is not None
            display, kind = aten
            x = args[0] if args else kwargs.get("input")
            p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
            training = bool(args[2] if len(args) > 2 else kwargs.get("train", True))
            inplace = display.endswith("_")
        inside = self.stack[-1].module if self.stack else None
        in_dropout_module = isinstance(inside, nn.modules.dropout._DropoutNd)
        tensor = x if isinstance(x, torch.Tensor) else None
        call = DropCall(
            func=display,
            kind=kind,
            owner=self._owner(),
            event=-1,
            p=float(p) if isinstance(p, (int, float)) else None,
            training=training,
            inplace=inplace,
            in_shape=shape_of(tensor) if tensor is not None else (),
            location=None if in_dropout_module else user_frame(),
            on_parameter=isinstance(tensor, nn.Parameter),
            in_dropout_module=in_dropout_module,
        )
        # Calls torch would reject are recorded as findings and replaced by an identity, so that one
        # bad site does not hide every other finding behind an exception.
        bad_rate = call.p is not None and (call.p < 0 or call.p > 1 or math.isnan(call.p))
        bad_rank = kind == "dropout1d" and tensor is not None and tensor.dim() not in (2, 3)
        if tensor is not None and (bad_rate or bad_rank):
            call.substituted = "rate" if bad_rate else "rank"
            return _identity, (tensor,), {}, call
        return func, args, kwargs, call

    def _attention_call(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> DropCall:
        bound = _bind(func, args, kwargs)
        p = bound.get("dropout_p", 0.0)
        if func is _SDPA:
            display = "F.scaled_dot_product_attention"
            training = None
        else:
            display = "F.multi_head_attention_forward"
            training = bool(bound.get("training", True))
        q = bound.get("query")
        inside = self.stack[-1].module if self.stack else None
        return DropCall(
            func=display,
            kind="attention-dropout",
            owner=self._owner(),
            event=-1,
            p=float(p) if isinstance(p, (int, float)) else None,
            training=training,
            inplace=False,
            in_shape=shape_of(q) if isinstance(q, torch.Tensor) else (),
            location=None if isinstance(inside, nn.MultiheadAttention) else user_frame(),
        )

    # -- running --
    def run(self, model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], *, training: bool) -> Trace:
        """One forward pass with this tracer's hooks on every module (see :class:`Hooks` for several passes)."""
        with Hooks(model) as hooks:
            hooks.tracer = self
            return self.record(model, args, kwargs, training=training)

    def record(self, model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], *, training: bool) -> Trace:
        """One forward pass; the modules' hooks must already route to this tracer."""
        inputs = list(iter_tensors(args)) + list(iter_tensors(kwargs))
        for t in inputs:
            self.producer[id(t)] = -1
            self.keep.append(t)
        try:
            with _Mode(self):
                out = model(*args, **kwargs)
        except BaseException as exc:
            stack = self.failure_stack if self.failure is exc else [(f.path, f.module, f.in_shapes) for f in self.stack]
            raise TraceFailure(exc, stack) from exc
        self.busy = True
        outputs = [self.producer.get(id(t), -1) for t in iter_tensors(out)]
        trace = Trace(
            training=training,
            events=self.events,
            drop_calls=self.drop_calls,
            calls=self.calls,
            outputs=outputs,
            input_count=len(inputs),
            fingerprints=self.fingerprints,
            spans=self.spans,
            behaviour=self.behaviour,
        )
        if self.fingerprint and self.fp_over:
            # too many activations to keep per module: compare the model output only
            trace.fingerprints = {("<output>", 1): ([], [t.detach().clone() for t in iter_tensors(out)])}
        trace.build_consumers()
        self.keep.clear()
        self.producer.clear()
        return trace


class Hooks:
    """Forward hooks on every module, installed once for several passes; they route to ``self.tracer``."""

    def __init__(self, model: nn.Module, extra: Iterable[nn.Module] = ()) -> None:
        self.model = model
        self.extra = list(extra)  # modules outside the registered tree (kept in plain lists) that forward calls
        self.tracer: Tracer | None = None
        self.handles: list[Any] = []

    def _pre(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        if self.tracer is not None:
            with torch._C.DisableTorchFunction():
                self.tracer.pre_hook(module, args, kwargs)

    def _post(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        if self.tracer is not None:
            with torch._C.DisableTorchFunction():
                self.tracer.post_hook(module, args, kwargs, output)

    def __enter__(self) -> Hooks:
        for m in [*self.model.modules(), *self.extra]:
            self.handles.append(m.register_forward_pre_hook(self._pre, with_kwargs=True))
            self.handles.append(m.register_forward_hook(self._post, with_kwargs=True, always_call=True))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()
        self.tracer = None


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _is_atomic(m: nn.Module) -> bool:
    """Modules recorded as one event: torch's attention, RNNs and dropout classes, and every leaf."""
    if isinstance(m, (nn.MultiheadAttention, nn.RNNBase, nn.modules.dropout._DropoutNd)):
        return True
    return next(iter(m.children()), None) is None


_SIGNATURES: dict[Any, inspect.Signature] = {}


#: positional parameter names of builtins that inspect.signature cannot read
_BUILTIN_PARAMS: dict[Any, tuple[str, ...]] = {
    _SDPA: ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa"),
}


def _bind(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    names = _BUILTIN_PARAMS.get(func)
    if names is not None:
        bound = dict(zip(names, args, strict=False))
        bound.update(kwargs)
        return bound
    sig = _SIGNATURES.get(func)
    if sig is None:
        try:
            sig = _SIGNATURES[func] = inspect.signature(func)
        except (TypeError, ValueError):
            return dict(kwargs)
    try:
        ba = sig.bind(*args, **kwargs)
    except TypeError:
        return dict(kwargs)
    ba.apply_defaults()
    return dict(ba.arguments)


def module_paths(root: nn.Module) -> dict[int, str]:
    return {id(m): name for name, m in root.named_modules()}


def unregistered_modules(root: nn.Module, paths: dict[int, str]) -> dict[int, tuple[str, nn.Module]]:
    """Modules kept in plain lists, tuples or dicts of a registered module: ``model.eval()`` never reaches them.

    Returns id -> (display path such as ``head_drops[0]`` or ``drops['a'].inner``, module). Only one level of
    container is searched (``self.x = [m, ...]`` or ``{name: m}``), which is how the bug is written.
    """
    found: dict[int, tuple[str, nn.Module]] = {}
    for path, m in root.named_modules():
        for attr, value in vars(m).items():
            if attr.startswith("_") or not isinstance(value, (list, tuple, dict)):
                continue
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if not isinstance(item, nn.Module) or id(item) in paths or id(item) in found:
                    continue
                base = f"{path + '.' if path else ''}{attr}[{key!r}]"
                for sub, mod in item.named_modules():
                    if id(mod) not in paths and id(mod) not in found:
                        found[id(mod)] = (f"{base}.{sub}" if sub else base, mod)
    return found
