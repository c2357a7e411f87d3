"""From a read model to what the engine needs: the family, its features, and the tagged operation list.

:func:`infer_spec` names the family (mlp, cnn, resnet, rnn, transformer, gnn) and the spec fields
the model shows (layers, width, BatchNorm, activation, pooling, head, pre/post-norm, positions ...),
each with the evidence it was read from. :func:`layer_ops` tags the operations the way
:mod:`advisor.stack` tags its own stacks (``conv``, ``head``, ``hidden``, ``branch``, ``branch-mid``,
``stem``, ``attn``, ``ffn``, ``ffn-out``, ``embed``, ``final``, ``rnn``, ``gcn``, ``gat``), so the
engine's gap matching runs unchanged on the real model. Flags override any inferred field; the
tags follow the family in effect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from advisor.advise.read_model import ACTIVATIONS, OpRef, RawOp, Reading
from advisor.plan import Op


@dataclass
class Inferred:
    """Spec fields read from the model, with the evidence for each."""

    values: dict[str, Any] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)

    def set(self, key: str, value: Any, why: str) -> None:
        if value is None:
            return
        self.values[key] = value
        self.why[key] = why


# ---- the family ---------------------------------------------------------------------------------


def infer_spec(reading: Reading, model: Any = None) -> Inferred:
    """The family and spec fields a model shows. ``model`` (optional) lends its class and config names."""
    f = reading.features
    ops = reading.raw
    inf = Inferred()
    kinds = [o.kind for o in ops]
    n_conv = kinds.count("conv")
    gat = f.get("gat")
    if f.get("graph"):
        inf.set("arch", "gnn", "a product with a square adjacency-matrix input (graph convolution)")
        inf.set("gnn", "gat" if gat else "gcn", "softmax attention over neighbours" if gat else "no attention")
    elif f.get("attention"):
        inf.set("arch", "transformer", "attention (softmax(QKᵀ)·V) in the forward")
    elif f.get("recurrent"):
        inf.set("arch", "rnn", "a recurrent layer (" + _first(ops, "rnn-layer") + ")")
    elif n_conv:
        residual = bool(f.get("residual"))
        if residual and f.get("batchnorm"):
            inf.set("arch", "resnet", f"{f['residual']} residual adds and BatchNorm around {n_conv} convolutions")
        elif residual and "layernorm" in kinds:
            # the spec's 'resnet' without BatchNorm: normalized with LayerNorm, in ConvNeXt's block layout
            inf.set(
                "arch",
                "resnet",
                f"{f['residual']} residual adds and LayerNorm around {n_conv} convolutions (ConvNeXt's block layout)",
            )
        else:
            why = f"{n_conv} convolutions" + (", residual adds without BatchNorm" if residual else ", no residual adds")
            inf.set("arch", "cnn", why)
    else:
        inf.set("arch", "mlp", "fully connected layers only")
    arch = inf.values["arch"]
    inf.set("batch_norm", bool(f.get("batchnorm")), "BatchNorm layers" if f.get("batchnorm") else "no BatchNorm layer")
    {"mlp": _mlp, "cnn": _cnn, "resnet": _resnet, "rnn": _rnn, "transformer": _transformer, "gnn": _gnn}[arch](
        reading, inf, model
    )
    if reading.params:
        inf.set("params", int(reading.params), f"{reading.params:,} parameters")
    return inf


def _first(ops: list[RawOp], kind: str) -> str:
    return next((o.ref.cls for o in ops if o.kind == kind), kind)


def _activation(ops: list[RawOp], pick: Any = None) -> tuple[str | None, str]:
    for o in ops:
        if o.kind != "activation" or (pick is not None and not pick(o)):
            continue
        name = o.ref.cls.removeprefix("F.").removesuffix("()").lower().replace("_", "")
        for key, value in ACTIVATIONS.items():
            if name == key.replace("_", ""):
                return value, f"{o.ref.cls} at {o.ref.path or '<root>'}"
        return None, f"{o.ref.cls} (not an activation the knowledge base distinguishes)"
    return None, ""


def _width(ref: OpRef) -> int | None:
    if len(ref.out_shape) >= 2:
        return int(ref.out_shape[1]) if len(ref.out_shape) > 2 and ref.out_shape[1] > 1 else int(ref.out_shape[-1])
    return None


def _mlp(r: Reading, inf: Inferred, model: Any) -> None:
    linears = [o for o in r.raw if o.kind == "linear"]
    inf.set("layers", max(len(linears), 1), f"{len(linears)} hidden Linear layer(s) before the output layer")
    if linears and linears[0].ref.out_shape:
        inf.set(
            "width",
            int(linears[0].ref.out_shape[-1]),
            f"{linears[0].ref.path} has {linears[0].ref.out_shape[-1]} units",
        )
    act, why = _activation(r.raw)
    inf.set("activation", act, why)


def _head_start(ops: list[RawOp]) -> int:
    """Index of the first operation of a conv net's head: the first flatten or global pool after the last
    convolution, else the first Linear after it (ConvNeXt's block MLPs stay in the conv stack)."""
    last_conv = max((i for i, o in enumerate(ops) if o.kind == "conv"), default=0)
    for kinds in (("flatten", "global-pool"), ("linear", "output")):
        for i in range(last_conv + 1, len(ops)):
            if ops[i].kind in kinds:
                return i
    return len(ops)


def _cnn(r: Reading, inf: Inferred, model: Any) -> None:
    ops = r.raw
    h = _head_start(ops)
    convs = [o for o in ops[:h] if o.kind == "conv"]
    inf.set("layers", len(convs), f"{len(convs)} convolution(s) before the head")
    if convs:
        inf.set("width", _width(convs[0].ref), f"{convs[0].ref.path} has {_width(convs[0].ref)} output channels")
    pools = [o for o in ops[:h] if o.kind == "pool"]
    kinds = {"max" if "max" in o.ref.cls.lower() else "avg" for o in pools}
    if not pools:
        inf.set("pooling", "none", "no pooling between the convolutions")
    else:
        inf.set("pooling", "max" if "max" in kinds else "avg", ", ".join(sorted({o.ref.cls for o in pools})))
    head = ops[h:]
    hidden = [o for o in head if o.kind == "linear"]
    if any(o.kind == "global-pool" for o in head) and not hidden:
        inf.set("head", "gap", "global pooling, then the output layer")
    else:
        inf.set("head", "fc", f"flatten, then {len(hidden)} hidden FC layer(s) and the output layer")
    inf.set("fc_layers", len(hidden), f"{len(hidden)} hidden FC layer(s) in the head")
    act, why = _activation(ops[:h])
    inf.set("activation", act, why)
    inf.set("modality", "image", "2-D convolutions" if convs and len(convs[0].ref.in_shape) == 4 else "convolutions")


def _resnet(r: Reading, inf: Inferred, model: Any) -> None:
    blocks = residual_block_roots(r.raw)
    with_add = len(r.features.get("residual_blocks") or [])
    why = f"{len(blocks)} residual block(s)" + (
        f", {with_add} of them with a shortcut" if with_add < len(blocks) else ""
    )
    inf.set("layers", len(blocks), why)
    convs = [o for o in r.raw if o.kind == "conv"]
    if with_add < len(blocks):
        # MBConv-style: blocks that change resolution or width have no shortcut (MobileNet, MNASNet,
        # EfficientNet); ResNets, Wide ResNets and ConvNeXt have one on every block
        inf.set("inverted_residual", True, f"{len(blocks) - with_add} block(s) without a shortcut")
    if convs:
        inf.set("width", _width(convs[0].ref), f"the stem {convs[0].ref.path} has {_width(convs[0].ref)} channels")
    act, why = _activation(r.raw)
    inf.set("activation", act, why)
    head = r.raw[_head_start(r.raw) :]
    hidden = [o for o in head if o.kind == "linear"]
    inf.set(
        "head", "gap" if any(o.kind == "global-pool" for o in head) else "fc", "global pooling before the classifier"
    )
    inf.set("fc_layers", len(hidden), f"{len(hidden)} hidden FC layer(s) in the head")
    name = type(model).__name__.lower() if model is not None else ""
    wide = (
        "wide" in name
        or "wrn" in name
        or any(e.positions and _between_convs(r.raw, e.positions[0]) for e in r.existing if e.kind == "dropout")
    )
    inf.set(
        "wide",
        wide,
        "dropout between the convolutions of a block, or a Wide ResNet class"
        if wide
        else "no dropout between the convolutions of a block",
    )
    inf.set("modality", "image", "2-D convolutions")


def _between_convs(ops: list[RawOp], pos: int) -> bool:
    if pos <= 0 or pos >= len(ops):
        return False
    before = [o.kind for o in ops[:pos] if o.kind not in ("batchnorm", "activation")]
    after = [o.kind for o in ops[pos:] if o.kind not in ("batchnorm", "activation")]
    return bool(before and after and before[-1] == "conv" and after[0] == "conv")


def _rnn(r: Reading, inf: Inferred, model: Any) -> None:
    import torch.nn as nn

    layers = [o for o in r.raw if o.kind == "rnn-layer"]
    inf.set("layers", len(layers), f"{len(layers)} recurrent layer(s)")
    mods = [m for m in (model.modules() if model is not None else []) if isinstance(m, (nn.RNNBase, nn.RNNCellBase))]
    if mods:
        m = mods[0]
        inf.set("width", int(m.hidden_size), f"{type(m).__name__} hidden_size = {m.hidden_size}")
        cell = (
            "lstm" if isinstance(m, (nn.LSTM, nn.LSTMCell)) else "gru" if isinstance(m, (nn.GRU, nn.GRUCell)) else None
        )
        inf.set("cell", cell, type(m).__name__)
        inf.set("bidirectional", bool(getattr(m, "bidirectional", False)), f"{type(m).__name__}(bidirectional=...)")
    emb = [o for o in r.raw if o.kind == "embedding"]
    inf.set("embeddings", bool(emb), "token embeddings at the input" if emb else "float input sequence")
    out = [o for o in r.raw if o.kind == "output"]
    vocab = _vocab(model)
    if out and emb and vocab and out[-1].ref.out_shape and out[-1].ref.out_shape[-1] == vocab:
        inf.set("rnn_task", "lm", f"the output layer predicts the {vocab}-token vocabulary")
    elif out:
        inf.set("rnn_task", "classifier", "the output layer is not over the input vocabulary")
    inf.set("modality", "text" if emb else "sequence", "token ids" if emb else "float sequences")


def _vocab(model: Any) -> int | None:
    import torch.nn as nn

    if model is None:
        return None
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            return int(m.num_embeddings)
    return None


def _transformer(r: Reading, inf: Inferred, model: Any) -> None:
    f = r.features
    ops = r.raw
    roots = block_roots(ops)
    config = getattr(model, "config", None)
    enc = [x for x in dict.fromkeys(roots.values()) if x and "decoder" not in x]
    dec = [x for x in dict.fromkeys(roots.values()) if x and "decoder" in x]
    kind, why = "encoder", "no causal LM head and no decoder stack"
    if config is not None and getattr(config, "is_encoder_decoder", False):
        kind, why = "encoder-decoder", "config.is_encoder_decoder"
    elif enc and dec and any("encoder" in x for x in enc):
        kind, why = "encoder-decoder", "an encoder stack and a decoder stack"
    elif (config is not None and getattr(config, "is_decoder", False)) or _lm_head(r, model):
        kind, why = (
            "decoder",
            "a language-model head over the input vocabulary" if _lm_head(r, model) else "config.is_decoder",
        )
    inf.set("transformer", kind, why)
    n = len(set(roots.values())) if roots else sum(1 for o in ops if o.kind == "attention-weights")
    if kind == "encoder-decoder":
        n = max(len(enc), len(dec))
    inf.set("layers", max(n, 1), f"{n} Transformer block(s)" + (" per stack" if kind == "encoder-decoder" else ""))
    emb = next((o for o in ops if o.kind in ("embedding", "conv")), None)
    att = next((o for o in ops if o.kind == "attention-weights"), None)
    if emb is not None and emb.ref.out_shape:
        inf.set(
            "width",
            int(emb.ref.out_shape[-1] if emb.kind == "embedding" else emb.ref.out_shape[1]),
            f"{emb.ref.path} outputs {emb.ref.out_shape[-1] if emb.kind == 'embedding' else emb.ref.out_shape[1]}",
        )
    elif att is not None and att.ref.in_shape:
        inf.set("width", int(att.ref.in_shape[-1]), "the attention input")
    pre = f.get("pre_norm")
    if pre is not None:
        inf.set(
            "norm",
            "pre" if pre else "post",
            "the residual stream skips the LayerNorms" if pre else "a LayerNorm after every residual add",
        )
    in_ffn = [o for o in ops if o.kind == "activation"]
    act, why_act = _activation(in_ffn)
    inf.set("activation", act, why_act)
    vision = any(o.kind == "conv" for o in ops[: _first_index(ops, "attention-weights")])
    inf.set(
        "modality", "image" if vision else "text", "a convolutional patch embedding" if vision else "token embeddings"
    )
    if f.get("rotary"):
        inf.set("positions", "rotary", "rotary position embeddings applied to q and k (no embedding sum)")
    elif f.get("relative"):
        inf.set("positions", "relative", "a relative position bias inside attention")
    elif any(o.kind == "positional-encoding" for o in ops):
        inf.set("positions", "additive", "positions added to the token embeddings")
    embed_norm = _embed_norm(ops, roots)
    inf.set(
        "embedding_norm",
        embed_norm,
        "a LayerNorm on the embedding sum" if embed_norm else "no LayerNorm on the embeddings",
    )
    if f.get("gated_ffn"):
        inf.set("gated_ffn", True, "a gated FFN (two input projections multiplied)")


def _embed_norm(ops: list[RawOp], roots: dict[int, str]) -> bool:
    """A LayerNorm right after the embedding sum, outside every block (BERT's embeddings.LayerNorm)."""
    for i, o in enumerate(ops[: _first_index(ops, "attention-weights")]):
        if o.kind == "layernorm" and i > 0 and ops[i - 1].kind in ("embedding", "positional-encoding"):
            return i not in roots
    return False


def _first_index(ops: list[RawOp], kind: str) -> int:
    return next((i for i, o in enumerate(ops) if o.kind == kind), len(ops))


def _lm_head(r: Reading, model: Any) -> bool:
    vocab = _vocab(model)
    out = [o for o in r.raw if o.kind == "output"]
    return bool(vocab and out and len(out[-1].ref.out_shape) == 3 and out[-1].ref.out_shape[-1] == vocab)


def _gnn(r: Reading, inf: Inferred, model: Any) -> None:
    convs = [o for o in r.raw if o.kind in ("graph-conv",) or (o.kind == "output" and o.extra.get("adjacency"))]
    inf.set("layers", max(len(convs), 1), f"{len(convs)} graph convolution(s)")
    inf.set("modality", "graph", "an adjacency matrix input")


# ---- blocks -------------------------------------------------------------------------------------


def _numeric_ancestors(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts) - 1, 0, -1) if parts[i].isdigit()]


def block_roots(ops: list[RawOp]) -> dict[int, str]:
    """Transformer blocks: the module of each layer (``encoder.layer.3``), per operation index.

    The block of an attention is its deepest numbered ancestor that also holds a feed-forward Linear
    (T5 puts attention and FFN in ``block.N.layer.0`` and ``layer.1``); other operations belong to
    the block whose module holds them.
    """
    linears = [o.ref.path for o in ops if o.kind == "linear"]
    roots: list[str] = []
    for o in ops:
        if o.kind != "attention-weights":
            continue
        owner = o.extra.get("attention_owner") or o.ref.path
        cands = _numeric_ancestors(owner)
        chosen = next((c for c in cands if any(p.startswith(c + ".") for p in linears)), cands[0] if cands else None)
        if chosen and chosen not in roots:
            roots.append(chosen)
    out: dict[int, str] = {}
    for i, o in enumerate(ops):
        paths = [o.ref.path, o.extra.get("attention_owner") or ""]
        best = None
        for root in roots:
            if any(p == root or p.startswith(root + ".") for p in paths if p) and (
                best is None or len(root) > len(best)
            ):
                best = root
        if best is not None:
            out[i] = best
    return out


# ---- tagging ------------------------------------------------------------------------------------

Raw = list[RawOp]
Kinds = list[str]
Tags = list[tuple[str, ...]]
Blocks = list[int | None]
Keep = list[bool]


@dataclass
class Tagged:
    """The engine's operation list and, per operation, where it lies in the model."""

    ops: list[Op]
    refs: list[OpRef]
    raw_index: list[int]  # per op: the index in Reading.raw (positions of existing sites map through it)

    def position_of(self, raw_pos: int) -> int:
        """The gap in ``ops`` that a gap of the raw list maps to (folded operations move gaps)."""
        for k, r in enumerate(self.raw_index):
            if r >= raw_pos:
                return k
        return len(self.ops)


def layer_ops(reading: Reading, values: dict[str, Any]) -> Tagged:
    """Tag the model's operations for the family in ``values['arch']`` (see the module docstring)."""
    arch = values["arch"]
    raw = list(reading.raw)
    tags: list[tuple[str, ...]] = [() for _ in raw]
    blocks: list[int | None] = [None for _ in raw]
    kinds = [o.kind for o in raw]
    keep = [True for _ in raw]
    if arch == "transformer":
        _tag_transformer(raw, kinds, tags, blocks, keep, post=values.get("norm") == "post")
    elif arch == "gnn":
        _tag_gnn(raw, kinds, tags, blocks, keep, gat=values.get("gnn") == "gat")
    else:
        {"mlp": _tag_mlp, "cnn": _tag_cnn, "resnet": _tag_resnet, "rnn": _tag_rnn}[arch](raw, kinds, tags, blocks, keep)
    ops: list[Op] = []
    refs: list[OpRef] = []
    index: list[int] = []
    for i, o in enumerate(raw):
        if not keep[i]:
            continue
        label = "input" if o.kind == "input" else o.label
        if i == 0:
            label = f"input ({reading.input_desc})"
            tags[i] = ("input",)
        ops.append(Op(kind=kinds[i], label=label, tags=tags[i], block=blocks[i]))
        refs.append(o.ref)
        index.append(i)
    return Tagged(ops=ops, refs=refs, raw_index=index)


def _merge_into_previous(raw: list[RawOp], keep: list[bool], i: int, j: int) -> None:
    """Fold op ``i`` into op ``j`` (before it): its label and its last event."""
    a, b = raw[j], raw[i]
    ref = OpRef(
        path=b.ref.path,
        cls=b.ref.cls,
        first=a.ref.first,
        last=b.ref.last,
        hook_after=b.ref.hook_after,
        hook_before=a.ref.hook_before,
        in_shape=a.ref.in_shape,
        out_shape=b.ref.out_shape,
    )
    raw[j] = RawOp(
        kind=a.kind, label=f"{a.label} + {b.label}", ref=ref, role=a.role, block_root=a.block_root, extra=dict(a.extra)
    )
    keep[i] = False


def _fold_flatten(raw: list[RawOp], kinds: list[str], keep: list[bool]) -> None:
    for i in range(1, len(raw)):
        if kinds[i] == "flatten" and keep[i]:
            j = i - 1
            while j > 0 and not keep[j]:
                j -= 1
            if kinds[j] == "global-pool":
                _merge_into_previous(raw, keep, i, j)


def _drop_leading(kinds: list[str], keep: list[bool], drop: tuple[str, ...]) -> None:
    for i in range(1, len(kinds)):
        if kinds[i] in drop:
            keep[i] = False
        else:
            break


def _tag_mlp(raw: Raw, kinds: Kinds, tags: Tags, blocks: Blocks, keep: Keep) -> None:
    _drop_leading(kinds, keep, ("flatten",))
    block = -1
    for i, k in enumerate(kinds):
        if i == 0 or not keep[i]:
            continue
        if k == "linear":
            block += 1
        if k == "output":
            tags[i] = ("final",)
            continue
        tags[i] = ("hidden",)
        blocks[i] = max(block, 0)


def _tag_cnn(raw: Raw, kinds: Kinds, tags: Tags, blocks: Blocks, keep: Keep) -> None:
    _fold_flatten(raw, kinds, keep)
    h = _head_start(raw)
    if h < len(raw) and kinds[h] == "global-pool" and any(kinds[j] == "linear" for j in range(h + 1, len(raw))):
        # pooled to 1x1 and flattened, then hidden FC layers: the head of an FC-head CNN starts with a flatten
        kinds[h] = "flatten"
    block = -1
    fc = -1
    for i, k in enumerate(kinds):
        if i == 0 or not keep[i]:
            continue
        if i < h:
            if k == "conv":
                block += 1
            tags[i] = ("conv",)
            if k == "activation" and _after_linear(kinds, keep, i):
                # a Linear inside a conv block (ConvNeXt's channels-last MLP): not a conv feature map
                tags[i] = ("conv-mlp",)
            blocks[i] = max(block, 0)
        elif k == "output":
            tags[i] = ("final",)
        else:
            if k == "linear":
                fc += 1
            tags[i] = ("head",)
            blocks[i] = max(fc, 0) if k in ("linear", "activation", "batchnorm") else None


def _after_linear(kinds: Kinds, keep: Keep, i: int) -> bool:
    j = i - 1
    while j > 0 and (not keep[j] or kinds[j] in ("batchnorm", "layernorm")):
        j -= 1
    return kinds[j] == "linear"


def residual_block_roots(raw: list[RawOp]) -> list[str]:
    """The blocks of a residual CNN, in order: the modules of the residual adds, and the modules built
    like them that have no shortcut (EfficientNet's stride-2 MBConv blocks): numbered modules at the
    same depth that hold a convolution."""
    adds: list[str] = []
    for o in raw:
        if o.kind == "residual-add" and o.ref.path not in adds:
            adds.append(o.ref.path)
    numbered = [p for p in adds if p and p.rpartition(".")[2].isdigit()]
    depths = {p.count(".") for p in numbered}
    if len(depths) != 1:
        return adds
    depth = depths.pop()
    roots: list[str] = []
    for o in raw:
        if o.kind != "conv":
            continue
        parts = o.ref.path.split(".")
        if len(parts) > depth + 1 and parts[depth].isdigit():
            root = ".".join(parts[: depth + 1])
            if root not in roots:
                roots.append(root)
    return roots if set(adds) <= set(roots) else adds


def _tag_resnet(raw: Raw, kinds: Kinds, tags: Tags, blocks: Blocks, keep: Keep) -> None:
    _fold_flatten(raw, kinds, keep)
    h = _head_start(raw)
    roots = residual_block_roots(raw)
    first_block = None
    for i, o in enumerate(raw):
        if i == 0 or not keep[i] or i >= h:
            continue
        found = _root_of(o.ref.path, roots)
        if found is not None and first_block is None:
            first_block = i
        if found is None:
            tags[i] = ("stem",) if first_block is None else ("branch",)
            continue
        b = roots.index(found)
        blocks[i] = b
        tags[i] = ("branch",)
    # in each block: an activation between two convolutions is mid-branch; one after the add is 'post'
    for b in range(len(roots)):
        idx = [i for i in range(len(raw)) if blocks[i] == b and keep[i]]
        add_at = max((i for i in idx if kinds[i] == "residual-add"), default=None)
        for i in idx:
            if kinds[i] == "global-pool":
                kinds[i] = "pool"  # squeeze-and-excitation inside a block, not the head
            if kinds[i] != "activation":
                continue
            if add_at is not None and i > add_at:
                tags[i] = ("post",)
                continue
            conv_before = any(kinds[j] == "conv" for j in idx if j < i)
            conv_after = any(kinds[j] == "conv" for j in idx if i < j and (add_at is None or j < add_at))
            if conv_before and conv_after:
                tags[i] = ("branch-mid",)
    for i in range(h, len(raw)):
        if not keep[i]:
            continue
        tags[i] = ("final",) if kinds[i] == "output" else ("head",)


def _root_of(path: str, roots: list[str]) -> str | None:
    best = None
    for r in roots:
        if (path == r or path.startswith(r + ".")) and (best is None or len(r) > len(best)):
            best = r
    return best


def _tag_rnn(raw: Raw, kinds: Kinds, tags: Tags, blocks: Blocks, keep: Keep) -> None:
    layer = -1
    seen_rnn = False
    for i, k in enumerate(kinds):
        if i == 0 or not keep[i]:
            continue
        if k == "rnn-layer":
            layer += 1
            seen_rnn = True
            tags[i] = ("rnn",)
            blocks[i] = layer
        elif not seen_rnn:
            tags[i] = ("embed",)
        elif k == "output":
            tags[i] = ("final",)
        else:
            tags[i] = ("head",)


def _tag_transformer(raw: Raw, kinds: Kinds, tags: Tags, blocks: Blocks, keep: Keep, post: bool = False) -> None:
    roots = block_roots(raw)
    order: list[str] = []
    for i in range(len(raw)):
        r = roots.get(i)
        if r is not None and r not in order:
            order.append(r)
    first = min(roots) if roots else _first_index(raw, "attention-weights")
    last = max(roots) if roots else len(raw) - 1
    both = any("decoder" in r for r in order) and any("decoder" not in r for r in order)
    for i in range(1, len(raw)):
        if not keep[i]:
            continue
        if i < first:
            if kinds[i] == "conv":
                kinds[i] = "embedding"  # a patch embedding
            tags[i] = ("embed",)
        elif i > last:
            tags[i] = ("final",) if kinds[i] in ("layernorm", "output") else ("head",)
        elif i not in roots:
            side = _side(raw[i].ref.path, both)
            if kinds[i] in ("embedding", "positional-encoding") or (
                kinds[i] == "layernorm" and i > 0 and kinds[i - 1] in ("embedding", "positional-encoding")
            ):
                tags[i] = ("embed", *side)  # the decoder's target embedding
            elif kinds[i] == "layernorm":
                tags[i] = ("final", *side)  # the encoder's final LayerNorm
            else:
                tags[i] = ("head",)
    for root in order:
        idx = [i for i in range(len(raw)) if roots.get(i) == root and keep[i]]
        b = order.index(root)
        side = _side(root, both)
        _tag_block(raw, kinds, tags, idx, side, post)
        for i in idx:
            blocks[i] = b
    # a pooler (Linear + activation) between the pooled token and the classifier is part of the pooling
    pools = [i for i in range(last + 1, len(raw)) if kinds[i] == "global-pool" and keep[i]]
    for g in pools:
        nxt = [j for j in range(g + 1, len(raw)) if keep[j]]
        if len(nxt) >= 3 and kinds[nxt[0]] == "linear" and kinds[nxt[1]] == "activation" and kinds[nxt[2]] == "output":
            _merge_into_previous(raw, keep, nxt[0], g)
            _merge_into_previous(raw, keep, nxt[1], g)


def _side(path: str, both: bool) -> tuple[str, ...]:
    if not both:
        return ()
    return ("decoder",) if "decoder" in path else ("encoder",)


def _tag_block(raw: Raw, kinds: Kinds, tags: Tags, idx: list[int], side: tuple[str, ...], post: bool) -> None:
    """Split a block at its residual adds; each piece is an attention or a feed-forward sub-layer."""
    segments: list[list[int]] = []
    cur: list[int] = []
    for i in idx:
        cur.append(i)
        if kinds[i] == "residual-add":
            segments.append(cur)
            cur = []
    if cur:
        if segments and all(kinds[i] == "layernorm" for i in cur):
            segments[-1].extend(cur)  # post-norm: the LayerNorm after the last add
        else:
            segments.append(cur)
    if post:
        # post-norm: the LayerNorm right after an add belongs to the sub-layer before it
        for s in range(1, len(segments)):
            seg = segments[s]
            if seg and kinds[seg[0]] == "layernorm" and kinds[segments[s - 1][-1]] == "residual-add":
                segments[s - 1].append(seg.pop(0))
    for seg in segments:
        sub = "attn" if any(kinds[i] == "attention-weights" for i in seg) else "ffn"
        linears = [i for i in seg if kinds[i] == "linear"]
        for i in seg:
            t = sub
            if sub == "ffn" and linears and i == linears[-1] and len(linears) > 1:
                t = "ffn-out"
            tags[i] = (t, *side)


def _tag_gnn(raw: Raw, kinds: Kinds, tags: Tags, blocks: Blocks, keep: Keep, gat: bool = False) -> None:
    """Graph layers: GCN's X·W and Â·(…) are one graph convolution; GAT keeps W·h, its coefficients and the sum."""
    tag = "gat" if gat else "gcn"
    conv = ("graph-conv", "output")
    if not gat:
        for i in range(1, len(raw) - 1):
            if keep[i] and kinds[i] == "linear" and kinds[i + 1] in conv and raw[i + 1].extra.get("adjacency"):
                kinds[i] = kinds[i + 1]
                _merge_into_previous(raw, keep, i + 1, i)
                raw[i].extra["adjacency"] = True
    layer = -1
    for i, k in enumerate(kinds):
        if i == 0 or not keep[i]:
            continue
        starts = (k == "linear") if gat else (k in conv and raw[i].extra.get("adjacency"))
        if starts:
            layer += 1
        tags[i] = (tag,) if k != "activation" else ("gnn",)
        blocks[i] = max(layer, 0)
