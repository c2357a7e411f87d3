"""The user's network as a list of operations, top to bottom, for each family.

This is structure only (what the layers are); where dropout goes is decided by the knowledge base
(see :mod:`advisor.recommend`). Tags name the part of the network an operation belongs to:
``input``, ``conv`` (the conv stack), ``head`` (the classifier head), ``hidden`` (MLP hidden layers),
``branch`` and ``branch-mid`` (inside a residual branch), ``stem``, ``attn``, ``ffn``, ``ffn-out``,
``embed``, ``encoder`` and ``decoder`` (which stack of an encoder-decoder), ``gcn``, ``gat``,
``final``. Matching also knows ``embed-out``, the last operation of an embedding section (what the
first layer reads), computed from the order (see :func:`op_tags`).

Transformers follow the reference models: BERT's LayerNorm on the embedding sum
(``embedding_norm``), no embedding sum at all when positions are rotary (RoPE, LLaMA) or a relative
bias on the attention logits (T5), and in an encoder-decoder with pre-norm a final LayerNorm closing
each stack (T5 drops the output of both).
"""

from __future__ import annotations

from advisor.plan import Op
from advisor.schema import Operation
from advisor.spec import Spec


def build_stack(spec: Spec) -> list[Op]:
    """The operations of the user's network, input first; see the module docstring for the tags."""
    s = spec.resolved()
    return {
        "mlp": _mlp,
        "cnn": _cnn,
        "resnet": _resnet,
        "rnn": _rnn,
        "transformer": _transformer,
        "gnn": _gnn,
    }[s.arch](s)


def _op(kind: Operation, label: str, tags: tuple[str, ...] = (), block: int | None = None) -> Op:
    # Built from fixed data here, so not validated: validating would build pydantic's validators for
    # Op on every command start, for nothing (the plan is validated when it is read back, see load_plan).
    return Op.model_construct(kind=kind, label=label, tags=tags, block=block)


def op_tags(ops: list[Op], index: int) -> tuple[str, ...]:
    """The tags of ``ops[index]`` plus the positional ones: ``embed-out`` on the last op of an embedding section."""
    op = ops[index]
    if "embed" in op.tags and (index + 1 == len(ops) or "embed" not in ops[index + 1].tags):
        return (*op.tags, "embed-out")
    return op.tags


def _act(s: Spec) -> str:
    return {
        "relu": "ReLU",
        "leaky-relu": "LeakyReLU",
        "gelu": "GELU",
        "silu": "SiLU",
        "tanh": "Tanh",
        "sigmoid": "Sigmoid",
        "selu": "SELU",
        "elu": "ELU",
    }[s.activation or "relu"]


def _mlp(s: Spec) -> list[Op]:
    w = s.width
    ops = [_op(kind="input", label="input features", tags=("input",))]
    for i in range(s.layers or 1):
        ops.append(_op(kind="linear", label=f"Linear(→{w})  hidden {i + 1}", tags=("hidden",), block=i))
        if s.batch_norm:
            ops.append(_op(kind="batchnorm", label=f"BatchNorm1d({w})", tags=("hidden",), block=i))
        ops.append(_op(kind="activation", label=_act(s), tags=("hidden",), block=i))
    ops.append(_op(kind="output", label="Linear(→classes)  logits", tags=("final",)))
    return ops


def _cnn(s: Spec) -> list[Op]:
    ops = [_op(kind="input", label="input image", tags=("input",))]
    c = s.width or 64
    for i in range(s.layers or 1):
        ch = c * 2 ** min(i, 3)
        ops.append(_op(kind="conv", label=f"Conv2d(→{ch}, 3×3)  block {i + 1}", tags=("conv",), block=i))
        if s.batch_norm:
            ops.append(_op(kind="batchnorm", label=f"BatchNorm2d({ch})", tags=("conv",), block=i))
        ops.append(_op(kind="activation", label=_act(s), tags=("conv",), block=i))
        if s.pooling == "max":
            ops.append(_op(kind="pool", label="MaxPool2d(2)", tags=("conv",), block=i))
        elif s.pooling == "avg":
            ops.append(_op(kind="pool", label="AvgPool2d(2)", tags=("conv",), block=i))
    if s.head == "gap":
        ops.append(_op(kind="global-pool", label="AdaptiveAvgPool2d(1) + flatten", tags=("head",)))
    else:
        ops.append(_op(kind="flatten", label="Flatten", tags=("head",)))
        for j in range(s.fc_layers or 0):
            ops.append(_op(kind="linear", label=f"Linear(→{4 * c * 4})  FC {j + 1}", tags=("head",), block=j))
            ops.append(_op(kind="activation", label=_act(s), tags=("head",), block=j))
    ops.append(_op(kind="output", label="Linear(→classes)  logits", tags=("final",)))
    return ops


def _resnet(s: Spec) -> list[Op]:
    c = s.width or 64
    ops = [
        _op(kind="input", label="input image", tags=("input",)),
        _op(kind="conv", label=f"Conv2d(→{c}, 3×3)  stem", tags=("stem",)),
    ]
    if s.wide:
        # Pre-activation block as in Wide ResNets: BN-ReLU-conv-BN-ReLU-(dropout)-conv, plus the shortcut.
        for i in range(s.layers or 1):
            ops += [
                _op(kind="batchnorm", label="BatchNorm2d", tags=("branch",), block=i),
                _op(kind="activation", label=_act(s), tags=("branch",), block=i),
                _op(kind="conv", label=f"Conv2d 3×3  block {i + 1}a", tags=("branch",), block=i),
                _op(kind="batchnorm", label="BatchNorm2d", tags=("branch",), block=i),
                _op(kind="activation", label=_act(s), tags=("branch-mid",), block=i),
                _op(kind="conv", label=f"Conv2d 3×3  block {i + 1}b", tags=("branch",), block=i),
                _op(kind="residual-add", label="+ shortcut", tags=("branch",), block=i),
            ]
        ops += [
            _op(kind="batchnorm", label="BatchNorm2d", tags=("final",)),
            _op(kind="activation", label=_act(s), tags=("final",)),
        ]
    elif not s.batch_norm:
        # A residual CNN normalized with LayerNorm instead of BatchNorm, laid out as ConvNeXt's block:
        # depthwise 7x7 conv, LayerNorm, pointwise expansion, activation, pointwise projection, + shortcut.
        ops.append(_op(kind="layernorm", label="LayerNorm", tags=("stem",)))
        for i in range(s.layers or 1):
            ops += [
                _op(kind="conv", label=f"Conv2d 7×7 depthwise  block {i + 1}", tags=("branch",), block=i),
                _op(kind="layernorm", label="LayerNorm", tags=("branch",), block=i),
                _op(kind="conv", label="Conv2d 1×1 (→4c)", tags=("branch",), block=i),
                _op(kind="activation", label=_act(s), tags=("branch",), block=i),
                _op(kind="conv", label="Conv2d 1×1 (→c)", tags=("branch",), block=i),
                _op(kind="residual-add", label="+ shortcut", tags=("branch",), block=i),
            ]
        ops += [
            _op(kind="global-pool", label="AdaptiveAvgPool2d(1) + flatten", tags=("head",)),
            _op(kind="layernorm", label="LayerNorm", tags=("head",)),
            _op(kind="output", label="Linear(→classes)  logits", tags=("final",)),
        ]
        return ops
    else:
        ops += [
            _op(kind="batchnorm", label=f"BatchNorm2d({c})", tags=("stem",)),
            _op(kind="activation", label=_act(s), tags=("stem",)),
        ]
        for i in range(s.layers or 1):
            ops += [
                _op(kind="conv", label=f"Conv2d 3×3  block {i + 1}a", tags=("branch",), block=i),
                _op(kind="batchnorm", label="BatchNorm2d", tags=("branch",), block=i),
                _op(kind="activation", label=_act(s), tags=("branch-mid",), block=i),
                _op(kind="conv", label=f"Conv2d 3×3  block {i + 1}b", tags=("branch",), block=i),
                _op(kind="batchnorm", label="BatchNorm2d", tags=("branch",), block=i),
                _op(kind="residual-add", label="+ shortcut", tags=("branch",), block=i),
                _op(kind="activation", label=_act(s), tags=("post",), block=i),
            ]
    ops += [
        _op(kind="global-pool", label="AdaptiveAvgPool2d(1) + flatten", tags=("head",)),
        _op(kind="output", label="Linear(→classes)  logits", tags=("final",)),
    ]
    return ops


def _rnn(s: Spec) -> list[Op]:
    cell = (s.cell or "lstm").upper()
    ops = [_op(kind="input", label="token ids" if s.embeddings else "input sequence", tags=("input",))]
    if s.embeddings:
        ops.append(_op(kind="embedding", label="Embedding(vocab, emb)", tags=("embed",)))
    direction = "bidirectional " if s.bidirectional else ""
    for i in range(s.layers or 1):
        ops.append(
            _op(
                kind="rnn-layer",
                label=f"{cell} layer {i + 1} ({direction}{s.width} units)",
                tags=("rnn",),
                block=i,
            )
        )
    if s.rnn_task == "lm":
        ops.append(_op(kind="output", label="Linear(→vocab)  next-token logits", tags=("final",)))
    elif s.rnn_task == "seq2seq":
        ops.append(_op(kind="output", label="Linear(→vocab)  decoder logits", tags=("final",)))
    else:
        ops.append(_op(kind="output", label="Linear(→classes) on the last hidden state", tags=("final",)))
    return ops


def _embedding_ops(s: Spec, vision: bool, side: tuple[str, ...] = ()) -> list[Op]:
    """Token (or patch) embedding, the additive position sum if any, and BERT's LayerNorm on the sum."""
    target = side == ("decoder",)
    what = "target token embedding" if target else ("patch embedding" if vision else "token embedding")
    tags = ("embed", *side)
    ops = [_op(kind="embedding", label=what, tags=tags)]
    if s.positions == "additive":
        ops.append(_op(kind="positional-encoding", label="+ positional encoding", tags=tags))
    if s.embedding_norm:
        ops.append(_op(kind="layernorm", label="embedding LayerNorm", tags=tags))
    return ops


def _attention_label(s: Spec, name: str, i: int, label: str) -> str:
    where = {"rotary": "  (rotary positions in q, k)", "relative": "  (+ relative position bias)"}
    return f"softmax(QKᵀ/√d)  {name} {i + 1} {label}" + where.get(s.positions or "additive", "")


def _transformer(s: Spec) -> list[Op]:
    vision = s.modality == "image"
    both = s.transformer == "encoder-decoder"
    ops = [_op(kind="input", label="image patches" if vision else "token ids", tags=("input",))]
    ops += _embedding_ops(s, vision, ("encoder",) if both else ())
    stacks = [("encoder", s.layers or 1)]
    if s.transformer == "decoder":
        stacks = [("decoder", s.layers or 1)]
    elif s.transformer == "encoder-decoder":
        stacks = [("encoder", s.layers or 1), ("decoder", s.layers or 1)]
    pre = s.norm == "pre"
    block = 0
    for name, n in stacks:
        side = (name,) if both else ()
        if name == "decoder" and both:
            ops += _embedding_ops(s, vision, side)
        for i in range(n):
            subs = [("attn", "self-attention" + (" (causal)" if name == "decoder" else ""))]
            if name == "decoder" and both:
                subs.append(("attn", "cross-attention"))
            subs.append(("ffn", "feed-forward"))
            for kind, label in subs:
                if pre:
                    ops.append(_op(kind="layernorm", label="LayerNorm", tags=(kind, *side), block=block))
                if kind == "attn":
                    ops += [
                        _op(
                            kind="attention-weights",
                            label=_attention_label(s, name, i, label),
                            tags=("attn", *side),
                            block=block,
                        ),
                        _op(kind="attention", label="· V, output projection", tags=("attn", *side), block=block),
                    ]
                else:
                    ops += [
                        _op(
                            kind="linear",
                            label=f"Linear(→4d)  {name} {i + 1} FFN",
                            tags=("ffn", *side),
                            block=block,
                        ),
                        _op(kind="activation", label=_act(s), tags=("ffn", *side), block=block),
                        _op(kind="linear", label="Linear(→d)", tags=("ffn-out", *side), block=block),
                    ]
                ops.append(_op(kind="residual-add", label="+ residual", tags=(kind, *side), block=block))
                if not pre:
                    ops.append(_op(kind="layernorm", label="LayerNorm", tags=(kind, *side), block=block))
            block += 1
        if pre and both and name == "encoder":
            ops.append(_op(kind="layernorm", label="final LayerNorm (encoder output)", tags=("final", "encoder")))
    if pre:
        ops.append(_op(kind="layernorm", label="final LayerNorm", tags=("final", *(("decoder",) if both else ()))))
    if s.transformer == "encoder":
        ops.append(_op(kind="global-pool", label="[CLS] token / mean pool", tags=("head",)))
        ops.append(_op(kind="output", label="Linear(→classes)  task classifier", tags=("final",)))
    else:
        ops.append(_op(kind="output", label="Linear(→vocab)  LM head", tags=("final",)))
    return ops


def _gnn(s: Spec) -> list[Op]:
    ops = [_op(kind="input", label="node features", tags=("input",))]
    n = s.layers or 2
    for i in range(n):
        last = i == n - 1
        if s.gnn == "gat":
            # The coefficients are computed from W·h before any dropout; the reference code then drops the
            # coefficients and, separately, the transformed features W·h_j that the aggregation reads.
            ops += [
                _op(kind="linear", label=f"GAT layer {i + 1}: W·h", tags=("gat",), block=i),
                _op(
                    kind="attention-weights",
                    label="softmax(LeakyReLU(aᵀ[Wh_i‖Wh_j]))  coefficients",
                    tags=("gat",),
                    block=i,
                ),
                _op(kind="attention", label="values: the transformed features W·h_j", tags=("gat",), block=i),
                _op(
                    kind="graph-conv" if not last else "output",
                    label="aggregate Σ_j α_ij·W·h_j" + ("  → class logits" if last else ""),
                    tags=("gat",),
                    block=i,
                ),
            ]
        else:
            ops.append(
                _op(
                    kind="graph-conv" if not last else "output",
                    label=f"GraphConv(Â·X·W)  layer {i + 1}" + ("  → class logits" if last else ""),
                    tags=("gcn",),
                    block=i,
                )
            )
        if not last:
            ops.append(_op(kind="activation", label="ELU" if s.gnn == "gat" else _act(s), tags=("gnn",), block=i))
    return ops
