"""Read a built model: the operations it executes, in the engine's vocabulary, with module paths.

One train-mode forward is recorded by the auditor's tracer (:mod:`advisor.audit.trace`); this module
turns its events into the list of operations the engine plans on (:class:`advisor.plan.Op`: input,
embedding, positional-encoding, linear, conv, activation, pool, global-pool, flatten, batchnorm,
layernorm, attention-weights, attention, residual-add, rnn-layer, graph-conv, output), each carrying
the module path it came from, so that a plan site reads "after ``features.3`` (ReLU), before
``features.4`` (MaxPool2d)".

What is folded or left out, and why:

- existing dropout is not an operation: it is a *site* at the gap where it runs (the change list
  compares it with the plan);
- the inside of attention (q/k/v projections, rotary or relative position terms, masking, the
  softmax-times-V product) becomes two operations, ``attention-weights`` (the softmax) and
  ``attention`` (the output projection), as in the engine's Transformer stack;
- the shortcut of a residual block (identity, or a 1x1 conv + BatchNorm downsample) is not on the
  main path: its add becomes ``residual-add`` after the residual branch;
- shape-only calls (view, transpose ...), masks and gates (``*``) are not operations.

The result also says which module a new dropout can hang from: the module whose forward output is
exactly an operation's output (a forward hook), or whose first input is exactly its input (a
forward pre-hook). A functional call in the middle of a ``forward`` has neither; a plan site there
can only be added by editing that ``forward``.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from advisor.audit import trace as tr

#: module classes outside torch read by their name
_NORM_NAME = re.compile(r"norm", re.I)
_ACT_NAME = re.compile(r"activation|gelu|silu|swish|mish|relu|tanh|sigmoid|softplus|quickgelu|glu\b", re.I)
_ROTARY_NAME = re.compile(r"rotary|rope\b|sinusoid", re.I)
_POOL_NAME = re.compile(r"pool", re.I)
_EMBED_NAME = re.compile(r"embed", re.I)
_POSITION_NAME = re.compile(r"position|pos_emb|wpe$", re.I)
_REDUCE = frozenset({"mean", "amax", "max", "sum", "logsumexp", "adaptive_avg_pool1d"})
_GRAPH_FUNCS = frozenset({"spmm", "sparse_mm", "mm_sparse", "index_add", "scatter_add", "index_add_", "scatter_add_"})
_ELEMENTWISE = frozenset(
    {"mul", "cat", "neg", "where", "masked_fill", "exp", "log", "pow", "sqrt", "rsqrt", "abs", "clamp", "tril", "triu"}
)

#: engine activation names (Spec.activation) by class or function name
ACTIVATIONS = {
    "relu": "relu",
    "relu6": "relu",
    "gelu": "gelu",
    "newgeluactivation": "gelu",
    "geluactivation": "gelu",
    "gelutanh": "gelu",
    "fastgeluactivation": "gelu",
    "quickgeluactivation": "gelu",
    "silu": "silu",
    "siluactivation": "silu",
    "swish": "silu",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "selu": "selu",
    "elu": "elu",
    "leakyrelu": "leaky-relu",
    "leaky_relu": "leaky-relu",
}


@dataclass
class OpRef:
    """Where one operation of the list comes from in the model."""

    path: str  # the module whose call produced the operation's output ('' is the model itself)
    cls: str  # its class name, or the torch call ("F.relu", "add")
    first: int  # first trace event of the operation (-1: the model input)
    last: int  # last trace event
    hook_after: str | None = None  # a module whose forward output is exactly this operation's output
    hook_before: str | None = None  # a module whose first input is exactly this operation's input
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()


@dataclass
class RawOp:
    """An operation before the family's tags are known."""

    kind: str
    label: str
    ref: OpRef
    role: str = ""  # attn / ffn inside a Transformer block, shortcut-free residual add ...
    block_root: str | None = None  # the module of the repeated block it belongs to
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Existing:
    """A place that drops today (the auditor's site), located at gaps of the operation list."""

    site: str  # the auditor's site id
    module_path: str
    op: str  # "nn.Dropout", "F.dropout", "F.scaled_dot_product_attention", "nn.LSTM(dropout=)" ...
    kind: str
    p: float | None
    positions: list[int] = field(default_factory=list)
    calls: int = 0
    holder: RateHolder | None = None
    replaceable: bool = False  # a dropout module that can be swapped for nn.Identity


@dataclass
class RateHolder:
    """Where the rate of a site lives, so that it can be changed without editing code."""

    path: str  # module path
    attr: str  # attribute read at every forward: 'p', 'dropout', 'attention_dropout' ...
    how: str  # "module p", "module attribute", "nn.MultiheadAttention.dropout", "RNN dropout"

    def describe(self) -> str:
        return f"{self.path or '<root>'}.{self.attr}"


@dataclass
class Latent:
    """A dropout call or module running at p = 0: a place whose rate can be raised (an 'add' without code)."""

    position: int
    kind: str
    holder: RateHolder | None
    op: str
    module_path: str


@dataclass
class Reading:
    """What :func:`read_model` learnt about a model."""

    model_class: str
    raw: list[RawOp]
    existing: list[Existing]
    latent: list[Latent]
    features: dict[str, Any]  # structural facts used to infer the spec (see advisor.advise.infer)
    skipped: list[str]
    notes: list[str]
    params: int
    device: str
    input_desc: str
    report: Any  # the audit report of the same model (sites and findings)
    module_classes: dict[str, str] = field(default_factory=dict)  # every module path -> class name, in order
    packages: dict[str, str] = field(default_factory=dict)  # module path -> 'transformers 5.24.0' (library code)


# ---- entry point --------------------------------------------------------------------------------


def read_model(model: nn.Module, example_inputs: Any, *, seed: int = 0) -> Reading:
    """Audit ``model`` (train and eval forwards) and read its structure from the train-mode trace.

    ``example_inputs``: one tensor, a tuple of positional inputs, or a dict of keyword inputs. The
    model is left as it was found (modes, buffers, random-number state). Raises
    :class:`advisor.audit.api.ModelRunError` when the forward rejects the inputs (exit 2 in the CLI).
    """
    from advisor.audit import api

    _check_model(model)
    traces: list[tr.Trace] = []
    report = api.audit(model, example_inputs, check_determinism=False, seed=seed, traces_out=traces)
    if not traces:
        from advisor.errors import UsageError

        raise UsageError(
            f"{type(model).__name__} is a frozen graph: its dropout cannot be planned or changed in place",
            hint="plan for the eager nn.Module it was exported from",
        )
    train = traces[0]
    reader = _Reader(model, train)
    reader.run()
    side = [s for s in report.sites if reader.on_side(s)]
    existing = reader.locate_existing([s for s in report.sites if s not in side])
    skipped = reader.skipped()
    if reader.side:
        heads = ", ".join(reader.side_heads()) or "?"
        kept = ", ".join(f"{s.module} p={s.p:g}" if s.p is not None else s.module for s in side)
        skipped.append(
            f"auxiliary heads that feed a second output, not the main one (train mode only): {heads}; "
            "the plan is for the main output" + (f", and their dropout stays as it is ({kept})" if kept else "")
        )
    inputs = list(tr.iter_tensors(example_inputs))
    desc = ", ".join(api._tensor_desc(t) for t in inputs) or "no tensors"
    return Reading(
        model_class=type(model).__name__,
        raw=reader.ops,
        existing=existing,
        latent=reader.latent(),
        features=reader.features(),
        skipped=skipped,
        notes=reader.notes,
        params=sum(p.numel() for p in model.parameters()),
        device=report.device,
        input_desc=desc,
        report=report,
        module_classes={path: type(m).__name__ for path, m in model.named_modules()},
        packages=_packages(model),
    )


def _packages(model: nn.Module) -> dict[str, str]:
    """Modules whose forward is a library's code (torch, transformers, timm ...), with the library's version."""
    from advisor.audit.analysis import package_version, third_party_package

    out = {}
    for path, m in model.named_modules():
        top = third_party_package(type(m))
        if top is not None:
            out[path] = package_version(top)
    return out


def _check_model(model: Any) -> None:
    from advisor.errors import UsageError

    if not isinstance(model, nn.Module):
        raise UsageError(
            f"recommend_for() needs a torch.nn.Module, got {type(model).__name__}",
            hint="pass the built model, e.g. Net()",
        )
    if isinstance(model, torch.jit.ScriptModule):
        raise UsageError(
            "a TorchScript module is a frozen graph: its dropout cannot be planned or changed in place",
            hint="plan for the eager nn.Module it was scripted or traced from (audit checks the frozen graph)",
        )


# ---- the reader ---------------------------------------------------------------------------------

_OPS = frozenset(
    {
        "linear",
        "conv",
        "batchnorm",
        "layernorm",
        "embedding",
        "activation",
        "pool",
        "rnn-layer",
        "rnn-cell",
        "attention",
        "softmax",
        "matmul",
        "add",
        "reduce",
        "flatten",
        "graph",
        "rotary",
    }
)


class _Reader:
    def __init__(self, model: nn.Module, train: tr.Trace) -> None:
        self.model = model
        self.t = train
        self.ev = train.events
        self.modules = dict(model.named_modules())
        self.unknown: dict[str, str] = {}
        self.cat = [self._category(e) for e in self.ev]
        self.absorbed: set[int] = set()  # events folded into an attention
        self.shortcut: set[int] = set()  # events on a residual shortcut
        self.ops: list[RawOp] = []
        self.notes: list[str] = []
        self.attn_owner: dict[int, str] = {}  # attention event -> the attention module
        self.attn_pairs: list[tuple[int, int, int | None, str]] = []  # (weights ev, values ev, out-proj ev, owner)
        self.residual: dict[int, tuple[int, int]] = {}  # add event -> (branch input ev, shortcut input ev)
        self.pos_adds: set[int] = set()
        self.flags: dict[str, Any] = {"rotary": False, "relative": False, "gated_ffn": False}
        self.op_events: dict[int, list[int]] = {}  # event -> indices in self.ops of ops emitted at it
        self.zero: list[Latent] = []  # sites of today that run at p = 0 (filled by locate_existing)
        self.gat: dict[int, int | None] = {}  # neighbour softmax event -> the aggregation that reads it
        self.t_inputs = [
            tuple(s)
            for e in self.ev
            for k, s in enumerate(e.in_shapes)
            if k < len(e.producers) and e.producers[k] == -1
        ]
        self.side = self._side_outputs()  # events that feed only a second output (an auxiliary head)

    def _ancestors(self, starts: Iterable[int]) -> set[int]:
        seen: set[int] = set()
        todo = [i for i in starts if i >= 0]
        while todo:
            cur = todo.pop()
            if cur in seen:
                continue
            seen.add(cur)
            todo.extend(p for p in self.ev[cur].producers if p >= 0 and p not in seen)
        return seen

    def _side_outputs(self) -> set[int]:
        """Events that feed only outputs after the first (GoogLeNet's and Inception's auxiliary classifiers,
        returned beside the logits in train mode), when they hold a layer with weights: the plan is for
        the main output, and the dropout of such a head is left as it is."""
        outs = [o for o in self.t.outputs if o >= 0]
        if len(set(outs)) < 2:
            return set()
        main = self._ancestors(outs[:1])
        side = self._ancestors(outs[1:]) - main
        if not any(self.cat[i] in ("linear", "conv") for i in side):
            return set()
        return side

    def side_heads(self) -> list[str]:
        """The outermost modules of the auxiliary heads (paths, shortest first)."""
        paths: list[str] = []
        for path in sorted({self.ev[i].owner for i in self.side if self.ev[i].owner}, key=lambda q: (len(q), q)):
            if not any(path.startswith(q + ".") for q in paths):
                paths.append(path)
        return paths

    def on_side(self, site: Any) -> bool:
        """Whether every call of a site of today runs inside an auxiliary head."""
        if not self.side:
            return False
        evs = [d.event for d in self.t.drop_calls if d.owner == site.module and d.event >= 0]
        evs += [i for i, e in enumerate(self.ev) if e.kind == "module" and e.owner == site.module]
        return bool(evs) and all(i in self.side for i in evs)

    # -- event categories --

    def _category(self, e: tr.Event) -> str:
        if e.op == "dropout":
            return "dropout"
        if e.kind == "module":
            m = e.module
            if isinstance(m, nn.Flatten):
                return "flatten"
            if isinstance(m, nn.RNNCellBase):
                return "rnn-cell"
            if e.op == "module":
                return self._module_category(m, e)
            return e.op
        name = tr.normalize_name(e.name)
        if e.op == "shape":
            if name in ("flatten", "view", "reshape") and self._flattens(e):
                return "flatten"
            if name == "getitem" and len(e.in_shapes) >= 1 and len(e.out_shapes) >= 1:
                i, o = e.in_shapes[0], e.out_shapes[0]
                if len(i) == 3 and len(o) == 2 and o[0] == i[0]:
                    return "reduce"
            return "shape"
        if name in _REDUCE:
            i = e.in_shapes[0] if e.in_shapes else ()
            o = e.out_shapes[0] if e.out_shapes else ()
            return "reduce" if len(i) >= 3 and 0 < len(o) < len(i) else "other"
        if name in _GRAPH_FUNCS:
            return "graph"
        if e.op == "matmul" and e.extra.get("parameter"):
            return "linear"
        if e.op in ("linear", "conv", "batchnorm", "layernorm", "embedding", "activation", "pool", "rnn-layer"):
            return e.op
        if e.op in ("attention", "softmax", "matmul", "add"):
            return e.op
        return "other"

    def _module_category(self, m: Any, e: tr.Event) -> str:
        name = type(m).__name__
        if name == "Conv1D" and isinstance(getattr(m, "weight", None), torch.Tensor):
            return "linear"  # transformers' GPT-2 projection (a transposed Linear)
        if _ROTARY_NAME.search(name):
            return "rotary"
        if _NORM_NAME.search(name):
            return "layernorm"
        if _ACT_NAME.search(name):
            return "activation"
        if _POOL_NAME.search(name):
            return "pool"
        w = getattr(m, "weight", None)
        if isinstance(w, torch.Tensor) and _EMBED_NAME.search(name) and w.dim() == 2:
            return "embedding"
        if isinstance(w, torch.Tensor) and w.dim() == 2 and not any(True for _ in m.children()):
            return "linear"
        if any(True for _ in m.parameters(recurse=False)):
            self.unknown.setdefault(self._path(e), name)
        return "other"

    @staticmethod
    def _flattens(e: tr.Event) -> bool:
        if not e.in_shapes or not e.out_shapes:
            return False
        i, o = e.in_shapes[0], e.out_shapes[0]
        return len(i) >= 3 and len(o) == 2 and o[0] == i[0] and sum(1 for d in i[1:] if d > 1) >= 1

    def _path(self, e: tr.Event) -> str:
        return e.owner

    # -- walking the data flow --

    def _producer(self, idx: int, k: int = 0) -> int:
        """The producer of input ``k`` of event ``idx``, looking through shape-only calls and dropout."""
        e = self.ev[idx]
        if len(e.producers) <= k:
            return -3
        p = e.producers[k]
        while p >= 0 and self.cat[p] in ("shape", "dropout"):
            pe = self.ev[p]
            if not pe.producers:
                break
            p = pe.producers[0]
        return p

    def _consumers(self, idx: int) -> Iterable[int]:
        """Consumers of an event, looking through shape-only calls and dropout."""
        todo = [idx]
        seen = {idx}
        while todo:
            cur = todo.pop()
            for c in self.t.consumers.get(cur, ()):
                if c in seen:
                    continue
                seen.add(c)
                if self.cat[c] in ("shape", "dropout"):
                    todo.append(c)
                else:
                    yield c

    # -- attention --

    def _find_attention(self) -> None:
        for i, c in enumerate(self.cat):
            if c == "attention":
                e = self.ev[i]
                owner = e.owner
                if e.kind == "module":
                    # nn.MultiheadAttention: one atomic event holds the projections, softmax and output
                    self.attn_pairs.append((i, i, None, owner))
                    continue
                self._attention_region(i, i, owner)
            elif c == "softmax" and i not in self.absorbed:
                e = self.ev[i]
                if self._neighbour_softmax(i):
                    self._graph_attention(i)
                    continue
                if not e.out_shapes or len(e.out_shapes[0]) < 3:
                    continue
                values = next((c2 for c2 in self._consumers(i) if self.cat[c2] == "matmul"), None)
                if values is None:
                    continue
                self._attention_region(i, values, e.owner)

    def _square_inputs(self) -> set[int]:
        return {int(s[0]) for s in self.t_inputs if len(s) == 2 and s[0] == s[1] and s[0] > 1}

    def _neighbour_softmax(self, i: int) -> bool:
        """A softmax over an (N, N) score matrix, N the size of a square model input: GAT coefficients."""
        e = self.ev[i]
        o = e.out_shapes[0] if e.out_shapes else ()
        return len(o) == 2 and o[0] == o[1] and int(o[0]) in self._square_inputs()

    def _graph_attention(self, i: int) -> None:
        """GAT: the coefficients (softmax over neighbours) and the aggregation that reads them."""
        agg = next((c for c in self._consumers(i) if self.cat[c] == "matmul"), None)
        todo = [i]
        seen = {i}
        while todo:
            cur = todo.pop()
            for p in self.ev[cur].producers:
                if p < 0 or p in seen or p in self.absorbed or self.cat[p] in ("dropout", "graph"):
                    continue
                if self.cat[p] == "linear" and self.ev[p].kind == "module":
                    continue  # W·h itself: an operation of the layer, not part of the coefficients
                if self.ev[p].owner != self.ev[i].owner:
                    continue
                seen.add(p)
                self.absorbed.add(p)
                todo.append(p)
        self.gat[i] = agg
        self.flags["gat"] = True

    def _inside(self, path: str, owner: str) -> bool:
        return owner == "" or path == owner or path.startswith(owner + ".")

    def _attention_region(self, weights: int, values: int, owner: str) -> None:
        """Fold the projections and position terms feeding an attention into it; find its output projection."""
        parent = owner.rpartition(".")[0] if "." in owner else ""
        stop_kinds = {"linear", "conv", "embedding"}
        todo = [weights, values]
        seen = set(todo)
        self.absorbed.update(todo)
        while todo:
            cur = todo.pop()
            for p in self.ev[cur].producers:
                if p < 0 or p in seen:
                    continue
                seen.add(p)
                c = self.cat[p]
                pe = self.ev[p]
                inside = self._inside(pe.owner, owner) and owner != ""
                if c in stop_kinds:
                    if inside:
                        self.absorbed.add(p)
                        if c == "embedding":
                            self.flags["relative"] = True
                    continue
                if c == "rotary":
                    self.absorbed.add(p)
                    self.flags["rotary"] = True
                    continue
                if c in ("layernorm", "batchnorm", "attention", "rnn-layer", "dropout") or (c == "add" and not inside):
                    if c == "layernorm" and inside:
                        self.absorbed.add(p)  # q/k norms (Qwen3, OLMo 2)
                    continue
                if c == "activation" and not inside:
                    continue
                if pe.kind == "function" and tr.normalize_name(pe.name) in ("cos", "sin"):
                    self.flags["rotary"] = True  # rotary positions computed in the forward
                self.absorbed.add(p)
                todo.append(p)
        out_proj = None
        todo2 = [values]
        seen2 = {values}
        while todo2 and out_proj is None:
            cur = todo2.pop(0)
            for nxt in self.t.consumers.get(cur, ()):
                if nxt in seen2:
                    continue
                seen2.add(nxt)
                cc = self.cat[nxt]
                if cc in ("shape", "dropout", "other") and not (cc == "other" and self.ev[nxt].op == "add"):
                    if cc == "shape":
                        self.absorbed.add(nxt)
                    todo2.append(nxt)
                elif cc == "linear" and self._inside(self.ev[nxt].owner, parent if parent else owner):
                    out_proj = nxt
                    break
        self.attn_pairs.append((weights, values, out_proj, owner))
        if out_proj is not None:
            self.absorbed.discard(out_proj)

    # -- residual adds --

    def _find_residuals(self) -> None:
        for i, c in enumerate(self.cat):
            if c != "add" or i in self.absorbed:
                continue
            e = self.ev[i]
            if len(e.producers) < 2:
                if e.extra.get("parameter"):
                    self.pos_adds.add(i)
                continue
            shapes = [tuple(s) for s in e.in_shapes[:2]]
            a, b = self._producer(i, 0), self._producer(i, 1)
            if a == -2 or b == -2:
                if e.extra.get("parameter") or -2 in (a, b):
                    self.pos_adds.add(i)
                continue
            common = self._common_ancestor(a, b)
            if common is not None and common >= 0 and self.cat[common] not in _OPS:
                common = None  # two lookups sharing an index tensor (position ids): not a residual stream
            if common is None:
                if self._from_embedding(a) or self._from_embedding(b):
                    self.pos_adds.add(i)
                continue
            if len(shapes) == 2 and shapes[0] != shapes[1] and shapes[0][-1:] != shapes[1][-1:]:
                continue
            na, nb = self._path_ops(a, common), self._path_ops(b, common)
            if any(self.cat[x] == "embedding" and x not in self.absorbed for x in (*na, *nb)):
                # a lookup on one side (a learned position table fed the ids or the embeddings' shape, BART)
                # makes an embedding sum, never a residual branch
                self.pos_adds.add(i)
                continue
            branch, short = (a, b) if len(na) >= len(nb) else (b, a)
            if not (na or nb):
                continue
            self.residual[i] = (branch, short)
            self.shortcut.update(nb if branch == a else na)

    def _from_embedding(self, idx: int) -> bool:
        steps = 0
        while idx >= 0 and steps < 8:
            c = self.cat[idx]
            if c == "embedding" or (c == "add" and idx in self.pos_adds):
                return True
            if c not in ("shape", "dropout", "other", "layernorm"):
                return c == "conv"  # a patch embedding
            prods = self.ev[idx].producers
            if not prods:
                return False
            idx = prods[0]
            steps += 1
        return False

    def _common_ancestor(self, a: int, b: int, limit: int = 20000) -> int | None:
        """The latest event both inputs derive from (-1: the model input), or None.

        Walks back in decreasing event order: when an event is taken from the heap every later event
        has been, so its two side bits are final, and the first event reached from both sides is the
        latest common ancestor.
        """
        if a == b:
            return a
        side: dict[int, int] = {a: 1, b: 2}
        heap = sorted((-a, -b))
        steps = 0
        while heap and steps < limit:
            cur = -heapq.heappop(heap)
            steps += 1
            if side[cur] == 3:
                return cur
            if cur < 0:
                continue
            for p in self.ev[cur].producers:
                if p == -2:
                    continue
                if p not in side:
                    side[p] = 0
                    heapq.heappush(heap, -p)
                side[p] |= side[cur]
        return None

    def _path_ops(self, start: int, stop: int) -> list[int]:
        """Operation-bearing events between ``stop`` (exclusive) and ``start`` (inclusive), walking back."""
        out: list[int] = []
        todo = [start]
        seen = {start}
        while todo:
            cur = todo.pop()
            if cur == stop or cur < 0 or cur < stop:
                continue
            if self.cat[cur] in _OPS:
                out.append(cur)
            for p in self.ev[cur].producers:
                if p not in seen and p >= stop and p != -2:
                    seen.add(p)
                    todo.append(p)
        return out

    # -- hook points --

    def _real(self, i: int) -> bool:
        return self.cat[i] not in ("shape", "dropout")

    def _within(self, path: str, root: str) -> bool:
        return path == root or path.startswith(root + ".")

    def _targets(self, idx: int) -> list[str]:
        """The module of an event and its ancestors, innermost first (never the model itself)."""
        e = self.ev[idx]
        path = e.owner
        if e.kind == "function":
            m = self.modules.get(path)
            if m is None or not path:
                return []
        out = []
        while path:
            out.append(path)
            path = path.rpartition(".")[0]
        return out

    def _hookable(self, path: str, base_calls: int, *, before: bool = False) -> bool:
        m = self.modules.get(path)
        if m is None or isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            return False
        if before and isinstance(m, nn.MultiheadAttention):
            return False  # a pre-hook sees only the query, not the keys and values
        return self.t.calls.get(path, 0) == base_calls

    def _resolve(self, p: int) -> int:
        """An event's producer seen through shape-only calls (a module returning ``x.view(...)``)."""
        while p >= 0 and self.cat[p] == "shape" and self.ev[p].producers:
            p = self.ev[p].producers[0]
        return p

    def _span_of(self, path: str, idx: int) -> tr.Span | None:
        """The call of module ``path`` that ran event ``idx`` (module calls are slices of the event list)."""
        for span in self.t.spans.get(path, ()):
            if span.start <= idx < span.end:
                return span
        return None

    def _hook_after(self, idx: int) -> str | None:
        """The outermost module whose forward returns exactly this event's output (a forward hook's place)."""
        found = None
        calls = None
        for path in self._targets(idx):
            span = self._span_of(path, idx)
            if span is None or not span.out_producers or self._resolve(span.out_producers[0]) != idx:
                break
            calls = self.t.calls.get(path, 0) if calls is None else calls
            if self._hookable(path, calls):
                found = path
            elif not isinstance(self.modules.get(path), (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
                break
        return found

    def _hook_before(self, idx: int) -> str | None:
        """The outermost module whose first input is exactly this event's input (a forward pre-hook's place)."""
        src = self._producer(idx, 0)
        found = None
        calls = None
        for path in self._targets(idx):
            span = self._span_of(path, idx)
            if span is None or not span.in_producers or self._resolve(span.in_producers[0]) != self._resolve(src):
                break
            if any(self._real(j) for j in range(span.start, idx)):
                break  # the module does something else first
            calls = self.t.calls.get(path, 0) if calls is None else calls
            if self._hookable(path, calls, before=True):
                found = path
            elif not isinstance(
                self.modules.get(path), (nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.MultiheadAttention)
            ):
                break
        return found

    # -- emitting operations --

    def _ref(self, first: int, last: int | None = None, *, path: str | None = None, cls: str | None = None) -> OpRef:
        last = first if last is None else last
        e, l_ev = self.ev[first], self.ev[last]
        return OpRef(
            path=l_ev.owner if path is None else path,
            cls=cls or (l_ev.name if l_ev.kind == "module" else _fn_name(l_ev.name)),
            first=first,
            last=last,
            hook_after=self._hook_after(last),
            hook_before=self._hook_before(first),
            in_shape=tuple(e.in_shapes[0]) if e.in_shapes else (),
            out_shape=tuple(l_ev.out_shapes[0]) if l_ev.out_shapes else (),
        )

    def _emit(self, kind: str, label: str, ref: OpRef, at: int, **extra: Any) -> RawOp:
        op = RawOp(kind=kind, label=label, ref=ref, extra=dict(extra))
        self.op_events.setdefault(at, []).append(len(self.ops))
        self.ops.append(op)
        return op

    def run(self) -> None:
        self._find_attention()
        self._find_residuals()
        self.ops.append(
            RawOp(kind="input", label="input", ref=OpRef(path="", cls="input", first=-1, last=-1), extra={})
        )
        weights_at = {w: (w, v, o, owner) for w, v, o, owner in self.attn_pairs}
        out_proj_at = {o: (w, v, o, owner) for w, v, o, owner in self.attn_pairs if o is not None}
        values_at = {v: (w, v, o, owner) for w, v, o, owner in self.attn_pairs if o is None}
        linear_inputs: dict[int, int] = {}  # producer -> op index of the first linear reading it (sibling fold)
        last_attention = max((v for _, v, _, _ in self.attn_pairs), default=-1)
        first_attention = min((w for w, _, _, _ in self.attn_pairs), default=-1)
        rnn_cells: dict[str, int] = {}
        for i, e in enumerate(self.ev):
            c = self.cat[i]
            if i in self.side:
                continue
            if i in self.gat:
                self._emit(
                    "attention-weights",
                    f"softmax over neighbours in {_show(e.owner)} (attention coefficients)",
                    self._ref(i),
                    i,
                    attention_owner=e.owner,
                    gat=True,
                )
                continue
            if i in self.gat.values():
                # the aggregation reads the coefficients and the transformed features W·h_j (GAT's third dropout)
                self._emit(
                    "attention",
                    f"values: W·h_j read by the aggregation in {_show(e.owner)}",
                    OpRef(path=e.owner, cls="values(W·h)", first=i, last=i),
                    i,
                    gat_values=True,
                )
                self._emit(
                    "graph-conv",
                    f"aggregate Σ_j α_ij·W·h_j ({_cls(e)}) in {_show(e.owner)}",
                    self._ref(i),
                    i,
                    adjacency=True,
                )
                continue
            if i in weights_at:
                _, v, o, owner = weights_at[i]
                cls = "nn.MultiheadAttention" if e.kind == "module" else e.name
                where = owner or "<root>"
                self._emit(
                    "attention-weights",
                    f"softmax(QKᵀ/√d) in {where} ({cls})",
                    OpRef(
                        path=owner,
                        cls=cls,
                        first=i,
                        last=i,
                        hook_before=self._hook_before(i) if e.kind == "module" else None,
                        in_shape=tuple(e.in_shapes[0]) if e.in_shapes else (),
                    ),
                    i,
                    attention_owner=owner,
                )
                if o is None:
                    self._emit(
                        "attention",
                        f"· V{', output projection' if e.kind == 'module' else ''} in {where}",
                        OpRef(
                            path=owner,
                            cls=cls,
                            first=v,
                            last=v,
                            hook_after=owner if e.kind == "module" else self._hook_after(v),
                            out_shape=tuple(self.ev[v].out_shapes[0]) if self.ev[v].out_shapes else (),
                        ),
                        v,
                        attention_owner=owner,
                    )
                continue
            if i in values_at and i not in weights_at:
                owner = values_at[i][3]
                self._emit(
                    "attention",
                    f"· V in {owner or '<root>'}",
                    self._ref(i, path=owner or e.owner),
                    i,
                    attention_owner=owner,
                )
                continue
            if i in out_proj_at:
                owner = out_proj_at[i][3]
                self._emit(
                    "attention", f"· V, output projection {e.owner} ({e.name})", self._ref(i), i, attention_owner=owner
                )
                continue
            if i in self.absorbed or i in self.shortcut:
                continue
            if c == "linear":
                src = self._producer(i, 0)
                sib = linear_inputs.get(src) if src >= 0 else None
                if sib is not None and self.ops[sib].ref.last > src and self._sibling_ok(sib, i):
                    op = self.ops[sib]
                    op.label += f" + {e.owner}"
                    op.extra.setdefault("siblings", []).append(e.owner)
                    self.flags["gated_ffn"] = True
                    continue
                op = self._emit("linear", _label(e), self._ref(i), i)
                if src >= -1:
                    linear_inputs[src] = len(self.ops) - 1
            elif c in ("conv", "batchnorm", "layernorm", "embedding", "activation"):
                kind = c
                if c == "embedding" and not self._reads_input(i):
                    continue  # position or segment embeddings: part of the positional-encoding add
                op = self._emit(kind, _label(e), self._ref(i), i)
                if c == "embedding":
                    op.ref.hook_before = None  # token ids: nothing to drop before a lookup
            elif c == "pool":
                shape = e.out_shapes[0] if e.out_shapes else ()
                adaptive = "adaptive" in e.name.lower() or "global" in e.name.lower()
                kind = "global-pool" if adaptive and len(shape) >= 3 and all(d == 1 for d in shape[2:]) else "pool"
                self._emit(kind, _label(e), self._ref(i), i)
            elif c == "reduce":
                if e.kind == "function" and tr.normalize_name(e.name) == "getitem" and i < last_attention:
                    continue  # an index inside the network (a slice of positions); a pooled token comes after it
                self._emit("global-pool", _label(e), self._ref(i), i, reduce=True)
            elif c == "flatten":
                self._emit(
                    "flatten",
                    _label(e),
                    self._ref(i),
                    i,
                )
            elif c == "rnn-layer":
                m = e.module
                n = int(getattr(m, "num_layers", 1) or 1)
                hidden = getattr(m, "hidden_size", "?")
                bidi = " bidirectional" if getattr(m, "bidirectional", False) else ""
                for layer in range(n):
                    ref = self._ref(i)
                    if layer > 0:
                        ref.hook_before = None
                    if layer < n - 1:
                        ref.hook_after = None
                    self._emit(
                        "rnn-layer",
                        f"{_show(e.owner)} ({_cls(e)}) layer {layer + 1} of {n},{bidi} {hidden} units",
                        ref,
                        i,
                        rnn_layer=layer,
                        rnn_layers=n,
                    )
            elif c == "rnn-cell":
                if e.owner in rnn_cells and self.ops[rnn_cells[e.owner]].ref.last >= i - 40:
                    op = self.ops[rnn_cells[e.owner]]
                    op.ref.last = i
                    op.extra["steps"] = op.extra.get("steps", 1) + 1
                    continue
                rnn_cells[e.owner] = len(self.ops)
                self._emit("rnn-layer", f"{_show(e.owner)} ({_cls(e)}) looped over time", self._ref(i), i, cell=True)
            elif c == "add":
                if i in self.residual:
                    self._emit("residual-add", f"+ shortcut in {_show(e.owner)}", self._ref(i), i)
                elif i in self.pos_adds:
                    if i > first_attention >= 0 and not self._sums_embeddings(i):
                        continue  # a learned bias on the output (BART's final_logits_bias), not a position
                    added = self._added_name(i)
                    prev = self.ops[-1] if self.ops else None
                    if (
                        prev is not None
                        and prev.kind == "positional-encoding"
                        and prev.ref.last == self._producer(i, 0)
                    ):
                        prev.label += f" + {added}"
                        prev.ref = self._ref(prev.ref.first, i, path=prev.ref.path)
                        continue
                    self._emit("positional-encoding", f"+ {added}", self._ref(i), i)
            elif c == "graph":
                self._emit("graph-conv", _label(e), self._ref(i), i)
            elif c == "matmul" and self._adjacency(i):
                self._emit("graph-conv", f"Â · H ({_cls(e)}) in {_show(e.owner)}", self._ref(i), i, adjacency=True)
        self._mark_output()

    def _sibling_ok(self, sib: int, i: int) -> bool:
        """Two linears reading one tensor in one module (gate and up projections), with nothing between."""
        a = self.ops[sib].ref.path.rpartition(".")[0]
        b = self.ev[i].owner.rpartition(".")[0]
        return (a == b and sib == len(self.ops) - 1) or (
            a == b and all(o.kind in ("activation",) for o in self.ops[sib + 1 :])
        )

    def _reads_input(self, i: int) -> bool:
        """Whether an embedding looks up the model's own input (token ids), not computed positions."""
        if _POSITION_NAME.search(self.ev[i].name) or _POSITION_NAME.search(self.ev[i].owner.rpartition(".")[2]):
            return False  # a learned position table that reads the ids only for their length (BART)
        p = self._producer(i, 0)
        return p == -1 or (p >= 0 and self.cat[p] == "other" and self._producer(p, 0) == -1)

    def _added_name(self, i: int) -> str:
        e = self.ev[i]
        for k in range(len(e.producers)):
            p = self._producer(i, k)
            if p >= 0 and self.cat[p] == "embedding" and not self._reads_input(p):
                return f"{_show(self.ev[p].owner)} ({_cls(self.ev[p])})"
        if e.extra.get("parameter") or -2 in e.producers:
            return f"learned position parameter in {_show(e.owner)}"
        return f"add in {_show(e.owner)}"

    def _adjacency(self, i: int) -> bool:
        """A matmul with a square model input (an adjacency matrix) as one operand."""
        e = self.ev[i]
        for k, s in enumerate(e.in_shapes[:2]):
            if len(s) == 2 and s[0] == s[1] and s[0] > 1:
                p = e.producers[k] if k < len(e.producers) else -3
                while p >= 0 and self.cat[p] == "shape":
                    p = self.ev[p].producers[0] if self.ev[p].producers else -3
                if p == -1:
                    return True
        return False

    def _sums_embeddings(self, i: int) -> bool:
        return any(
            self._producer(i, k) >= 0 and self.cat[self._producer(i, k)] == "embedding"
            for k in range(len(self.ev[i].producers))
        )

    def _mark_output(self) -> None:
        """The operation that produces the model's output (the logits layer) becomes ``output``."""
        outs = set()
        for o in self.t.outputs:
            cur = o
            steps = 0
            while (
                cur >= 0
                and steps < 16
                and self.cat[cur] in ("shape", "dropout", "softmax", "other", "activation", "add")
            ):
                if self.cat[cur] == "add" and -2 not in self.ev[cur].producers:
                    break  # only a learned bias added to the logits is looked through
                if self.cat[cur] == "activation" and tr.normalize_name(self.ev[cur].name).lower() not in (
                    "sigmoid",
                    "log_softmax",
                    "softmax",
                ):
                    break
                prods = self.ev[cur].producers
                if not prods:
                    break
                cur = prods[0]
                steps += 1
            outs.add(cur)
        for op in self.ops:
            if op.ref.last in outs and op.kind in ("linear", "conv", "graph-conv"):
                op.kind = "output"
            elif op.kind == "attention" and op.ref.last in outs:
                op.extra["output"] = True

    # -- locating what drops today --

    def _gap_for(self, starts: list[int], event: int) -> int:
        """The gap a dropout event sits in: by execution order, except where data flow says otherwise (a
        GAT's dropout on W·h runs before the aggregation whatever the order: it feeds its values operand)."""
        aggregations = {a for a in self.gat.values() if a is not None}
        if aggregations:
            for c in self._consumers(event):
                if c in aggregations and len(self.ev[c].producers) > 1 and self._drops_into(event, c, 1):
                    k = self._op_at(c, "graph-conv")
                    if k is None:
                        k = self._op_at(c, "output")
                    if k is not None:
                        return k
        return _gap(starts, event)

    def _drops_into(self, event: int, consumer: int, operand: int) -> bool:
        p = self.ev[consumer].producers[operand]
        while p >= 0 and p != event and self.cat[p] in ("shape", "dropout") and self.ev[p].producers:
            p = self.ev[p].producers[0]
        return p == event

    def locate_existing(self, sites: list[Any]) -> list[Existing]:
        starts = [op.ref.first for op in self.ops]
        by_owner_module: dict[str, list[int]] = {}
        for i, e in enumerate(self.ev):
            if e.kind == "module" and self.cat[i] == "dropout":
                by_owner_module.setdefault(e.owner, []).append(i)
        out: list[Existing] = []
        for s in sites:
            ex = Existing(site=s.id, module_path=s.module, op=s.op, kind=s.kind, p=s.p, calls=s.calls)
            m = self.modules.get(s.module)
            if s.source == "module" and isinstance(m, nn.MultiheadAttention):
                ex.positions = [
                    k + 1
                    for k, op in enumerate(self.ops)
                    if op.kind == "attention-weights" and op.extra.get("attention_owner") == s.module
                ]
                ex.holder = RateHolder(s.module, "dropout", "nn.MultiheadAttention.dropout")
            elif s.source == "module" and isinstance(m, nn.RNNBase):
                ex.positions = [
                    k + 1
                    for k, op in enumerate(self.ops[:-1])
                    if op.kind == "rnn-layer"
                    and op.ref.path == s.module
                    and self.ops[k + 1].ref.path == s.module
                    and self.ops[k + 1].kind == "rnn-layer"
                ]
                ex.holder = RateHolder(s.module, "dropout", "RNN dropout")
            elif s.source == "module":
                evs = by_owner_module.get(s.module, [])
                ex.positions = sorted({self._gap_for(starts, i) for i in evs})
                if m is not None and isinstance(getattr(m, "p", None), (int, float)):
                    ex.holder = RateHolder(s.module, "p", "module p")
                else:
                    attr = _rate_attr(m)
                    if attr is not None:
                        ex.holder = RateHolder(s.module, attr, "module attribute")
                ex.replaceable = m is not None
            else:
                loc = s.call_location
                evs = [
                    d.event
                    for d in self.t.drop_calls
                    if d.owner == s.module
                    and d.func == s.op
                    and d.event >= 0
                    and (loc is None or d.location is None or (d.location[0], d.location[1]) == (loc.file, loc.line))
                ]
                if not evs and s.source == "random":
                    evs = [d.event for d in self.t.drop_calls if d.owner == s.module and d.event >= 0]
                positions = set()
                for i in evs:
                    if self.cat[i] == "attention":
                        k = self._op_at(i, "attention-weights")
                        if k is not None:
                            positions.add(k + 1)
                    else:
                        positions.add(self._gap_for(starts, i))
                ex.positions = sorted(positions)
                if s.source == "function" and getattr(s, "rate_from", None):
                    ex.holder = RateHolder(s.rate_from, "p", "module p (read by a fused call)")
                elif s.source == "function":
                    ex.holder = self._holder_for_call(s.module, s.p, s.kind)
            if ex.p == 0.0 and ex.positions:
                # runs at p = 0: nothing drops today, but its rate can be raised
                for pos in ex.positions:
                    self.zero.append(Latent(pos, ex.kind, ex.holder, ex.op, ex.module_path))
                continue
            out.append(ex)
        return out

    def _op_at(self, event: int, kind: str) -> int | None:
        for k in self.op_events.get(event, []):
            if self.ops[k].kind == kind:
                return k
        return None

    def _holder_for_call(self, owner: str, p: float | None, kind: str) -> RateHolder | None:
        """The attribute a functional call reads its rate from: a never-called dropout module or a float."""
        m = self.modules.get(owner)
        if m is None or p is None:
            return None
        called = set(self.t.calls)
        mods = [
            (name, child)
            for name, child in m.named_children()
            if isinstance(child, nn.modules.dropout._DropoutNd)
            and abs(float(child.p) - p) < 1e-12
            and f"{owner + '.' if owner else ''}{name}" not in called
        ]
        if kind == "attention-dropout" and len(mods) > 1:
            mods = [(n, c) for n, c in mods if "att" in n.lower()] or mods
        if len(mods) == 1:
            name = mods[0][0]
            return RateHolder(f"{owner + '.' if owner else ''}{name}", "p", "module p (read by a fused call)")
        floats = [
            k
            for k, v in vars(m).items()
            if not k.startswith("_")
            and isinstance(v, float)
            and abs(v - p) < 1e-12
            and re.search(r"drop|(^|_)p$|prob|rate", k, re.I)
        ]
        if kind == "attention-dropout" and len(floats) > 1:
            floats = [k for k in floats if "att" in k.lower()] or floats
        if len(floats) == 1:
            return RateHolder(owner, floats[0], "module attribute")
        return None

    def latent(self) -> list[Latent]:
        """Calls that could drop but run at p = 0 (a fused attention with dropout_p=0, an nn.Dropout(0))."""
        starts = [op.ref.first for op in self.ops]
        found: dict[tuple[int, str], Latent] = {}
        for d in self.t.drop_calls:
            if d.p is None or d.p > 0 or d.event < 0 or d.event in self.side:
                continue
            if d.kind == "attention-dropout":
                k = self._op_at(d.event, "attention-weights")
                if k is None:
                    continue
                holder = self._holder_for_call(d.owner, 0.0, d.kind)
                found[(k + 1, d.owner)] = Latent(k + 1, d.kind, holder, d.func, d.owner)
            elif d.kind != "random":
                pos = _gap(starts, d.event)
                m = self.modules.get(d.owner)
                holder = (
                    RateHolder(d.owner, "p", "module p")
                    if isinstance(m, nn.modules.dropout._DropoutNd)
                    else self._holder_for_call(d.owner, 0.0, d.kind)
                )
                found[(pos, d.owner)] = Latent(pos, d.kind, holder, d.func, d.owner)
        for path, m in self.modules.items():
            if isinstance(m, nn.MultiheadAttention) and m.dropout == 0:
                for k, op in enumerate(self.ops):
                    if op.kind == "attention-weights" and op.extra.get("attention_owner") == path:
                        found[(k + 1, path)] = Latent(
                            k + 1,
                            "attention-dropout",
                            RateHolder(path, "dropout", "nn.MultiheadAttention.dropout"),
                            "nn.MultiheadAttention(dropout=)",
                            path,
                        )
            elif isinstance(m, nn.RNNBase) and m.dropout == 0 and m.num_layers > 1:
                for k in range(len(self.ops) - 1):
                    a, b = self.ops[k], self.ops[k + 1]
                    if a.kind == b.kind == "rnn-layer" and a.ref.path == b.ref.path == path:
                        found[(k + 1, path)] = Latent(
                            k + 1, "dropout", RateHolder(path, "dropout", "RNN dropout"), f"nn.{type(m).__name__}", path
                        )
        for lat in self.zero:
            found[(lat.position, lat.module_path)] = lat
        return list(found.values())

    # -- what was seen --

    def features(self) -> dict[str, Any]:
        f: dict[str, Any] = dict(self.flags)
        f["attention"] = bool(self.attn_pairs) or bool(self.gat)
        f["residual"] = len(self.residual)
        f["residual_blocks"] = sorted({self.ev[i].owner for i in self.residual})
        f["batchnorm"] = any(op.kind == "batchnorm" for op in self.ops)
        f["recurrent"] = any(op.kind == "rnn-layer" for op in self.ops)
        f["graph"] = any(op.kind == "graph-conv" for op in self.ops) or bool(self.gat)
        f["conv"] = sum(1 for op in self.ops if op.kind == "conv")
        f["pre_norm"] = self._pre_norm()
        f["shortcut_events"] = len(self.shortcut)
        return f

    def _pre_norm(self) -> bool | None:
        """Pre-norm when a residual add's shortcut is the previous add (the stream skips the norms)."""
        votes = []
        for _add, (_branch, short) in self.residual.items():
            if short < 0:
                continue
            c = self.cat[short]
            if c == "add" and short in self.residual:
                votes.append(True)
            elif c == "layernorm":
                votes.append(False)
        if not votes:
            return None
        return sum(votes) * 2 >= len(votes)

    def skipped(self) -> list[str]:
        out = []
        called = set(self.t.calls)
        inside_atomic = {
            p
            for path, m in self.modules.items()
            if isinstance(m, (nn.MultiheadAttention, nn.RNNBase))
            for p, _ in m.named_modules(prefix=path)
            if p != path
        }
        never = [
            path
            for path, m in self.modules.items()
            if path
            and path not in called
            and path not in inside_atomic
            and any(True for _ in m.parameters(recurse=False))
            and not any(c == path or c.startswith(path + ".") for c in called)
        ]
        if never:
            shown = ", ".join(f"{p} ({type(self.modules[p]).__name__})" for p in never[:6])
            more = f" and {len(never) - 6} more" if len(never) > 6 else ""
            out.append(
                f"modules with weights never called as modules (not in the plan; a parent's functional call may "
                f"use their weights): {shown}{more}"
            )
        if self.unknown:
            shown = ", ".join(f"{p} ({c})" for p, c in list(self.unknown.items())[:6])
            more = f" and {len(self.unknown) - 6} more" if len(self.unknown) > 6 else ""
            out.append(
                f"layers of an unknown kind, read as opaque (no site inside or next to them is planned): {shown}{more}"
            )
        return out


def _gap(starts: list[int], event: int) -> int:
    """The gap an event sits in: the index of the first operation that starts after it."""
    import bisect

    return bisect.bisect_right(starts, event)


def _fn_name(name: str) -> str:
    return name if name.startswith(("F.", "torch.", "Tensor.")) else f"{name}()"


def _cls(e: tr.Event) -> str:
    if e.kind == "module":
        return e.name
    name = e.name if e.name.startswith(("F.", "torch.", "Tensor.")) else tr.normalize_name(e.name)
    return _fn_name(name)


def _show(path: str) -> str:
    return path or "<root>"


def _label(e: tr.Event) -> str:
    """'features.3 (ReLU)' for a module call, 'relu() in blocks.0.forward' for a call inside a forward."""
    from advisor.advise.model_plan import describe

    return describe(e.owner, _cls(e))


def _rate_attr(m: Any) -> str | None:
    if m is None:
        return None
    for attr in tr._RATE_ATTRS:
        v = m.__dict__.get(attr)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return attr
    return None
