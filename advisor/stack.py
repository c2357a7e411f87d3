"""The user's network as a list of operations, top to bottom, for each family.

This is structure only (what the layers are); where dropout goes is decided by the knowledge base
(see :mod:`advisor.recommend`). Tags name the part of the network an operation belongs to:
``input``, ``conv`` (the conv stack), ``head`` (the classifier head), ``hidden`` (MLP hidden layers),
``branch`` and ``branch-mid`` (inside a residual branch), ``stem``, ``attn``, ``ffn``, ``ffn-out``,
``embed``, ``gcn``, ``gat``, ``final``.
"""

from __future__ import annotations

from advisor.plan import Op
from advisor.spec import Spec


def build_stack(spec: Spec) -> list[Op]:
    s = spec.resolved()
    return {
        "mlp": _mlp,
        "cnn": _cnn,
        "resnet": _resnet,
        "rnn": _rnn,
        "transformer": _transformer,
        "gnn": _gnn,
    }[s.arch](s)


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
    ops = [Op(kind="input", label="input features", tags=("input",))]
    for i in range(s.layers or 1):
        ops.append(Op(kind="linear", label=f"Linear(→{w})  hidden {i + 1}", tags=("hidden",), block=i))
        if s.batch_norm:
            ops.append(Op(kind="batchnorm", label=f"BatchNorm1d({w})", tags=("hidden",), block=i))
        ops.append(Op(kind="activation", label=_act(s), tags=("hidden",), block=i))
    ops.append(Op(kind="output", label="Linear(→classes)  logits", tags=("final",)))
    return ops


def _cnn(s: Spec) -> list[Op]:
    ops = [Op(kind="input", label="input image", tags=("input",))]
    c = s.width or 64
    for i in range(s.layers or 1):
        ch = c * 2 ** min(i, 3)
        ops.append(Op(kind="conv", label=f"Conv2d(→{ch}, 3×3)  block {i + 1}", tags=("conv",), block=i))
        if s.batch_norm:
            ops.append(Op(kind="batchnorm", label=f"BatchNorm2d({ch})", tags=("conv",), block=i))
        ops.append(Op(kind="activation", label=_act(s), tags=("conv",), block=i))
        if s.pooling == "max":
            ops.append(Op(kind="pool", label="MaxPool2d(2)", tags=("conv",), block=i))
        elif s.pooling == "avg":
            ops.append(Op(kind="pool", label="AvgPool2d(2)", tags=("conv",), block=i))
    if s.head == "gap":
        ops.append(Op(kind="global-pool", label="AdaptiveAvgPool2d(1) + flatten", tags=("head",)))
    else:
        ops.append(Op(kind="flatten", label="Flatten", tags=("head",)))
        for j in range(s.fc_layers or 0):
            ops.append(Op(kind="linear", label=f"Linear(→{4 * c * 4})  FC {j + 1}", tags=("head",), block=j))
            ops.append(Op(kind="activation", label=_act(s), tags=("head",), block=j))
    ops.append(Op(kind="output", label="Linear(→classes)  logits", tags=("final",)))
    return ops


def _resnet(s: Spec) -> list[Op]:
    c = s.width or 64
    ops = [
        Op(kind="input", label="input image", tags=("input",)),
        Op(kind="conv", label=f"Conv2d(→{c}, 3×3)  stem", tags=("stem",)),
    ]
    if s.wide:
        # Pre-activation block as in Wide ResNets: BN-ReLU-conv-BN-ReLU-(dropout)-conv, plus the shortcut.
        for i in range(s.layers or 1):
            ops += [
                Op(kind="batchnorm", label="BatchNorm2d", tags=("branch",), block=i),
                Op(kind="activation", label=_act(s), tags=("branch",), block=i),
                Op(kind="conv", label=f"Conv2d 3×3  block {i + 1}a", tags=("branch",), block=i),
                Op(kind="batchnorm", label="BatchNorm2d", tags=("branch",), block=i),
                Op(kind="activation", label=_act(s), tags=("branch-mid",), block=i),
                Op(kind="conv", label=f"Conv2d 3×3  block {i + 1}b", tags=("branch",), block=i),
                Op(kind="residual-add", label="+ shortcut", tags=("branch",), block=i),
            ]
        ops += [
            Op(kind="batchnorm", label="BatchNorm2d", tags=("final",)),
            Op(kind="activation", label=_act(s), tags=("final",)),
        ]
    else:
        ops += [
            Op(kind="batchnorm", label=f"BatchNorm2d({c})", tags=("stem",)),
            Op(kind="activation", label=_act(s), tags=("stem",)),
        ]
        for i in range(s.layers or 1):
            ops += [
                Op(kind="conv", label=f"Conv2d 3×3  block {i + 1}a", tags=("branch",), block=i),
                Op(kind="batchnorm", label="BatchNorm2d", tags=("branch",), block=i),
                Op(kind="activation", label=_act(s), tags=("branch-mid",), block=i),
                Op(kind="conv", label=f"Conv2d 3×3  block {i + 1}b", tags=("branch",), block=i),
                Op(kind="batchnorm", label="BatchNorm2d", tags=("branch",), block=i),
                Op(kind="residual-add", label="+ shortcut", tags=("branch",), block=i),
                Op(kind="activation", label=_act(s), tags=("post",), block=i),
            ]
    ops += [
        Op(kind="global-pool", label="AdaptiveAvgPool2d(1) + flatten", tags=("head",)),
        Op(kind="output", label="Linear(→classes)  logits", tags=("final",)),
    ]
    return ops


def _rnn(s: Spec) -> list[Op]:
    cell = (s.cell or "lstm").upper()
    ops = [Op(kind="input", label="token ids" if s.embeddings else "input sequence", tags=("input",))]
    if s.embeddings:
        ops.append(Op(kind="embedding", label="Embedding(vocab, emb)", tags=("embed",)))
    direction = "bidirectional " if s.bidirectional else ""
    for i in range(s.layers or 1):
        ops.append(
            Op(
                kind="rnn-layer",
                label=f"{cell} layer {i + 1} ({direction}{s.width} units)",
                tags=("rnn",),
                block=i,
            )
        )
    if s.rnn_task == "lm":
        ops.append(Op(kind="output", label="Linear(→vocab)  next-token logits", tags=("final",)))
    elif s.rnn_task == "seq2seq":
        ops.append(Op(kind="output", label="Linear(→vocab)  decoder logits", tags=("final",)))
    else:
        ops.append(Op(kind="output", label="Linear(→classes) on the last hidden state", tags=("final",)))
    return ops


def _transformer(s: Spec) -> list[Op]:
    vision = s.modality == "image"
    ops = [
        Op(kind="input", label="image patches" if vision else "token ids", tags=("input",)),
        Op(kind="embedding", label="patch embedding" if vision else "token embedding", tags=("embed",)),
        Op(kind="positional-encoding", label="+ positional encoding", tags=("embed",)),
    ]
    stacks = [("encoder", s.layers or 1)]
    if s.transformer == "decoder":
        stacks = [("decoder", s.layers or 1)]
    elif s.transformer == "encoder-decoder":
        stacks = [("encoder", s.layers or 1), ("decoder", s.layers or 1)]
    block = 0
    for name, n in stacks:
        if name == "decoder" and s.transformer == "encoder-decoder":
            ops += [
                Op(kind="embedding", label="target token embedding", tags=("embed",)),
                Op(kind="positional-encoding", label="+ positional encoding", tags=("embed",)),
            ]
        for i in range(n):
            subs = [("attn", "self-attention" + (" (causal)" if name == "decoder" else ""))]
            if name == "decoder" and s.transformer == "encoder-decoder":
                subs.append(("attn", "cross-attention"))
            subs.append(("ffn", "feed-forward"))
            for kind, label in subs:
                pre = s.norm == "pre"
                if pre:
                    ops.append(Op(kind="layernorm", label="LayerNorm", tags=(kind,), block=block))
                if kind == "attn":
                    ops += [
                        Op(
                            kind="attention-weights",
                            label=f"softmax(QKᵀ/√d)  {name} {i + 1} {label}",
                            tags=("attn",),
                            block=block,
                        ),
                        Op(kind="attention", label="· V, output projection", tags=("attn",), block=block),
                    ]
                else:
                    ops += [
                        Op(
                            kind="linear",
                            label=f"Linear(→4d)  {name} {i + 1} FFN",
                            tags=("ffn",),
                            block=block,
                        ),
                        Op(kind="activation", label=_act(s), tags=("ffn",), block=block),
                        Op(kind="linear", label="Linear(→d)", tags=("ffn-out",), block=block),
                    ]
                ops.append(Op(kind="residual-add", label="+ residual", tags=(kind,), block=block))
                if not pre:
                    ops.append(Op(kind="layernorm", label="LayerNorm", tags=(kind,), block=block))
            block += 1
    if s.norm == "pre":
        ops.append(Op(kind="layernorm", label="final LayerNorm", tags=("final",)))
    if s.transformer == "encoder":
        ops.append(Op(kind="global-pool", label="[CLS] token / mean pool", tags=("head",)))
        ops.append(Op(kind="output", label="Linear(→classes)  task classifier", tags=("final",)))
    else:
        ops.append(Op(kind="output", label="Linear(→vocab)  LM head", tags=("final",)))
    return ops


def _gnn(s: Spec) -> list[Op]:
    ops = [Op(kind="input", label="node features", tags=("input",))]
    n = s.layers or 2
    for i in range(n):
        last = i == n - 1
        if s.gnn == "gat":
            ops += [
                Op(kind="linear", label=f"GAT layer {i + 1}: W·h", tags=("gat",), block=i),
                Op(
                    kind="attention-weights",
                    label="softmax(LeakyReLU(aᵀ[Wh_i‖Wh_j]))  coefficients",
                    tags=("gat",),
                    block=i,
                ),
                Op(
                    kind="graph-conv" if not last else "output",
                    label="aggregate neighbours" + ("  → class logits" if last else ""),
                    tags=("gat",),
                    block=i,
                ),
            ]
        else:
            ops.append(
                Op(
                    kind="graph-conv" if not last else "output",
                    label=f"GraphConv(Â·X·W)  layer {i + 1}" + ("  → class logits" if last else ""),
                    tags=("gcn",),
                    block=i,
                )
            )
        if not last:
            ops.append(Op(kind="activation", label="ELU" if s.gnn == "gat" else _act(s), tags=("gnn",), block=i))
    return ops
