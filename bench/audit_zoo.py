"""Benchmark: audit 100+ real architectures from torchvision, timm and transformers, built without weights.

    python bench/audit_zoo.py [--libs torchvision,timm,transformers] [--only GLOB] [--limit N]
                              [--json results/audit_zoo.json] [--advisor PATH] [--timeout 120]

Each model is audited the way the CLI does it (``advisor.audit.load.audit_target`` with ``--device auto``:
built on the meta device, rebuilt on the CPU when its weights are small, CPU fallback when meta fails);
models above ``--meta-over`` parameters are audited with ``--device meta`` so that a failure on meta can
never fall back to a multi-GB CPU build. Weights are never loaded: torchvision ``weights=None`` (and
``weights_backbone=None``), timm ``pretrained=False`` with the ``drop_rate``/``drop_path_rate`` users set
when fine-tuning, transformers ``from_config(AutoConfig.for_model(model_type))``.

Printed per library: models audited, crashes, findings by rule (unexpected ones, and known upstream
defects from KNOWN_DEFECTS, the only place a library model may get a finding), and seconds per model
(median, max; one audit_target call, including the builds, after the library import). The JSON result
has every model, its findings, and the targets. Exit status 1 when a target is missed: 0 crashes,
0 unexpected findings, median audit < 3 s per model.

A model whose plain eval forward (without the auditor) fails on the zoo's input is *skipped*, not
counted as a crash: that is the zoo's input, not the auditor. Needs its own venv, because the
torchvision/timm wheels do not load with the CPU build of torch 2.13 that the project venv uses:

    python3 -m venv .zoo-venv
    .zoo-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm transformers
    .zoo-venv/bin/pip install -e .        # the tree under test (or run with --advisor PATH)

(last measured with timm 1.0.31 and transformers 5.24.0; KNOWN_DEFECTS names the library files it
verified at those versions).
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import gc
import importlib.metadata
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TARGET_MEDIAN_S = 3.0
HERE = Path(__file__).resolve()

# ---- the zoo ------------------------------------------------------------------------------------

# Small inputs keep three forwards of a CNN cheap on a 2-core CPU; models with a fixed input size get
# theirs (torchvision ViT/MaxViT, timm fixed_input_size) or are configured smaller (transformers image_size).
SMALL = (2, 3, 64, 64)
IMG = ((2, 3, 224, 224), "float")
TEXT = ((2, 16), "long")
AUDIO = ((2, 4000), "float")


@dataclass(frozen=True)
class Entry:
    lib: str
    name: str
    inputs: tuple[tuple[tuple[int, ...], str], ...]
    options: tuple[tuple[str, Any], ...] = ()  # passed to build_model as keyword arguments

    @property
    def kwargs(self) -> dict[str, Any]:
        return {"lib": self.lib, "name": self.name, **dict(self.options)}

    @property
    def key(self) -> str:
        return f"{self.lib}:{self.name}"


def _tv(name: str, shape: tuple[int, ...] = SMALL, **opts: Any) -> Entry:
    return Entry("torchvision", name, ((shape, "float"),), tuple(opts.items()))


TORCHVISION = [
    _tv("alexnet"),
    _tv("vgg11_bn"),
    _tv("resnet18"),
    _tv("resnet50"),
    _tv("resnext50_32x4d"),
    _tv("wide_resnet50_2"),
    _tv("densenet121"),
    _tv("squeezenet1_0"),
    _tv("squeezenet1_1"),
    _tv("inception_v3", (2, 3, 299, 299)),
    _tv("googlenet"),
    _tv("shufflenet_v2_x1_0"),
    _tv("mobilenet_v2"),
    _tv("mobilenet_v3_small"),
    _tv("mobilenet_v3_large"),
    _tv("mnasnet1_0"),
    _tv("efficientnet_b0"),
    _tv("efficientnet_v2_s"),
    _tv("regnet_x_400mf"),
    _tv("regnet_y_400mf"),
    _tv("convnext_tiny"),
    _tv("vit_b_16", image_size=64),
    _tv("vit_b_32", image_size=64),
    _tv("swin_t"),
    _tv("swin_v2_t"),
    _tv("maxvit_t", IMG[0]),
    _tv("fcn_resnet50", kind="segmentation"),
    _tv("deeplabv3_mobilenet_v3_large", kind="segmentation"),
    _tv("lraspp_mobilenet_v3_large", kind="segmentation"),
    _tv("r3d_18", (2, 3, 4, 64, 64), kind="video"),
    _tv("mc3_18", (2, 3, 4, 64, 64), kind="video"),
    _tv("r2plus1d_18", (2, 3, 4, 64, 64), kind="video"),
    _tv("s3d", (2, 3, 16, 224, 224), kind="video"),
]


def _timm(name: str, **kwargs: float) -> Entry:
    """A timm model with drop_rate/drop_path_rate 0.1; ``kwargs`` (named in the entry) add other rates."""
    label = name + ("(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")" if kwargs else "")
    return Entry("timm", label, (), (("model_name", name), *kwargs.items()))  # input size: see timm_entry


TIMM = [
    _timm(n)
    for n in (
        "resnet18",
        "resnet50d",
        "seresnext26d_32x4d",
        "resnext26ts",
        "efficientnet_b0",
        "efficientnetv2_rw_t",
        "mobilenetv2_100",
        "mobilenetv3_large_100",
        "mobilenetv4_conv_small",
        "rexnet_100",
        "ghostnet_100",
        "mnasnet_100",
        "regnety_002",
        "regnetz_b16",
        "densenet121",
        "dla34",
        "dpn68",
        "inception_v3",
        "legacy_xception",
        "vgg11_bn",
        "hrnet_w18_small",
        "eca_nfnet_l0",
        "vit_tiny_patch16_224",
        "vit_small_patch16_224",
        "deit_tiny_distilled_patch16_224",
        "beit_base_patch16_224",
        "eva02_tiny_patch14_224",
        "cait_xxs24_224",
        "xcit_nano_12_p16_224",
        "crossvit_tiny_240",
        "twins_svt_small",
        "pvt_v2_b0",
        "swin_tiny_patch4_window7_224",
        "swinv2_cr_tiny_ns_224",
        "convnext_atto",
        "convnextv2_atto",
        "coat_lite_tiny",
        "levit_128s",
        "mobilevit_xxs",
        "mobilevitv2_050",
        "efficientformer_l1",
        "efficientformerv2_s0",
        "poolformer_s12",
        "mixer_s16_224",
        "resmlp_12_224",
        "gmlp_ti16_224",
        "convit_tiny",
        "tnt_s_patch16_224",
        "visformer_tiny",
        "edgenext_xx_small",
        "maxvit_nano_rw_256",
        "coatnet_nano_rw_224",
        "fastvit_t8",
        "repvit_m1",
        "hiera_tiny_224",
        "focalnet_tiny_srf",
        "davit_tiny",
        "sequencer2d_s",
        "botnet26t_256",
        "gcvit_xxtiny",
        "mvitv2_tiny",
        "efficientvit_b0",
        "tiny_vit_5m_224",
        "hgnetv2_b0",
        "inception_next_tiny",
    )
] + [
    # TNT's attention dropout (attn_drop_rate, 0 by default) runs in place on the softmax output
    _timm("tnt_s_patch16_224", attn_drop_rate=0.1),
]


def _hf(model_type: str, head: str = "seqcls", inputs: tuple[tuple[int, ...], str] = TEXT, **config: float) -> Entry:
    """A transformers model from its default config; ``config`` overrides (named in the entry) set rates
    that default to 0 to the values published checkpoints use, so that their dropout paths run."""
    name = model_type + ("(" + ", ".join(f"{k}={v}" for k, v in config.items()) + ")" if config else "")
    return Entry("transformers", name, (inputs,), (("head", head), ("model_type", model_type), *config.items()))


def _hf_img(model_type: str, head: str = "imgcls") -> Entry:
    """Vision models configured for 64x64 images (position embeddings and biases follow config.image_size)."""
    return Entry("transformers", model_type, ((SMALL, "float"),), (("head", head), ("image_size", 64)))


TRANSFORMERS = [
    # encoders, with the sequence-classification head users fine-tune
    _hf("bert"),
    _hf("roberta"),
    _hf("distilbert"),
    _hf("albert"),
    # ALBERT v1 checkpoints (albert-base-v1) use 0.1 where the v2 default config has 0.0
    _hf("albert", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1),
    _hf("electra"),
    _hf("deberta"),
    _hf("deberta-v2"),
    _hf("xlm-roberta"),
    _hf("camembert"),
    _hf("mpnet"),
    _hf("funnel"),
    _hf("convbert"),
    _hf("squeezebert"),
    _hf("mobilebert"),
    _hf("ernie"),
    _hf("data2vec-text"),
    _hf("layoutlm"),
    _hf("big_bird"),
    _hf("longformer"),
    _hf("xlnet"),
    _hf("flaubert"),
    _hf("xlm"),
    _hf("megatron-bert"),
    _hf("roformer"),
    _hf("esm", vocab_size=33, pad_token_id=1, mask_token_id=32),  # ESM-2's tokens; the default config has none
    _hf("fnet"),
    _hf("luke", "base"),
    _hf("canine"),
    # decoders, with the language-model head (default configs of 1B+ run on meta)
    _hf("gpt2", "causal"),
    _hf("gpt_neo", "causal"),
    _hf("gptj", "causal"),
    _hf("gpt_neox", "causal"),
    _hf("gpt_bigcode", "causal"),
    _hf("opt", "causal"),
    _hf("bloom", "causal"),
    _hf("falcon", "causal"),
    _hf("falcon", "causal", attention_dropout=0.1, hidden_dropout=0.1),
    _hf("llama", "causal"),
    _hf("mistral", "causal"),
    # the 47B default runs on meta only through a bf16 grouped-mm kernel a plain forward rejects too: small config
    _hf(
        "mixtral",
        "causal",
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=4,
        attention_dropout=0.1,
    ),
    _hf("qwen2", "causal"),
    _hf("phi", "causal"),
    _hf("phi3", "causal"),
    _hf("gemma", "causal"),
    _hf("gemma2", "causal"),
    _hf("stablelm", "causal"),
    _hf("starcoder2", "causal"),
    _hf("codegen", "causal"),
    _hf("biogpt", "causal"),
    _hf("xglm", "causal"),
    _hf("ctrl", "causal"),
    _hf("mpt", "causal"),
    _hf("olmo", "causal"),
    _hf("persimmon", "causal"),
    # encoder-decoders: BART-style base models shift input_ids into decoder inputs; T5-style ones need
    # decoder inputs, so their encoders (same blocks and dropout code) are audited
    _hf("bart", "base"),
    _hf("mbart", "base"),
    _hf("plbart", "base"),
    _hf("t5", "T5EncoderModel"),
    _hf("mt5", "MT5EncoderModel"),
    _hf("umt5", "UMT5EncoderModel"),
    # vision
    _hf_img("vit"),
    _hf_img("deit", "DeiTForImageClassification"),
    _hf_img("beit"),
    _hf("swin", "imgcls", IMG),  # HF Swin does not run at 64x64 (window 7), not even without the auditor
    _hf_img("convnext"),
    _hf_img("dinov2"),
    _hf_img("data2vec-vision"),
    _hf_img("segformer"),
    _hf_img("levit", "LevitForImageClassification"),
    _hf_img("mobilevit"),
    _hf_img("efficientnet"),
    _hf_img("resnet"),
    _hf_img("clip_vision_model", "base"),
    # speech
    _hf("wav2vec2", "audiocls", AUDIO),
    _hf("hubert", "audiocls", AUDIO),
    _hf("sew", "audiocls", AUDIO),
    _hf("sew-d", "audiocls", AUDIO),
    _hf("data2vec-audio", "audiocls", AUDIO),
    _hf("unispeech", "audiocls", AUDIO),
    _hf("wavlm", "audiocls", AUDIO),
]

ZOO = TORCHVISION + TIMM + TRANSFORMERS


# ---- known upstream defects: the only findings a library model may get -------------------------


@dataclass(frozen=True)
class Known:
    lib: str
    model: str  # fnmatch over the zoo name
    slug: str
    module: str  # fnmatch over the finding's module path
    why: str  # the pattern in the library source, paraphrased, with file/class and the version checked
    kind: str = "defect"  # "defect": a real upstream bug; "design": a deliberate library choice an info rule
    #                       describes accurately (accepted at info severity only)


KNOWN_DEFECTS: list[Known] = [
    Known(
        "transformers",
        "albert(*)",
        "dropout-never-called",
        "albert.encoder.albert_layer_groups.*.albert_layers.*.dropout",
        "transformers 5.24 models/albert/modeling_albert.py AlbertLayer: self.dropout = "
        "nn.Dropout(hidden_dropout_prob) is built but ff_chunk/forward never apply it (no FFN output dropout); "
        "visible with the v1 rate 0.1 (the v2 default config has 0.0)",
    ),
    Known(
        "transformers",
        "falcon(*)",
        "dropout-never-called",
        "transformer.h.*.self_attention.attention_dropout",
        "transformers 5.24 models/falcon/modeling_falcon.py FalconAttention: with rotary embeddings (alibi off, "
        "the default) both the SDPA call (dropout_p=0.0) and the eager path skip attention_dropout; the source "
        "says 'It is unclear why dropout is not applied here (while it is with alibi)'",
    ),
    Known(
        "transformers",
        "xlnet",
        "dropout-never-called",
        "transformer.layer.*.dropout",
        "transformers 5.24 models/xlnet/modeling_xlnet.py XLNetLayer: self.dropout is never used in forward "
        "(a dead duplicate: config.dropout still acts through rel_attn.dropout and ff.dropout)",
    ),
    Known(
        "transformers",
        "esm(*)",
        "dropout-never-called",
        "esm.embeddings.dropout",
        "transformers 5.24 models/esm/modeling_esm.py EsmEmbeddings: self.dropout is built but its call is "
        "commented out ('I think this line was copied incorrectly from BERT, disabling it for now')",
    ),
    Known(
        "transformers",
        "efficientnet",
        "elementwise-dropout-on-feature-maps",
        "efficientnet.encoder.blocks.*.projection.dropout",
        "transformers 5.24 models/efficientnet/modeling_efficientnet.py EfficientNetFinalBlockLayer: "
        "drop_connect_rate is applied as element-wise nn.Dropout on the residual branch, where the reference "
        "EfficientNet (and timm, torchvision) drops whole samples (stochastic depth)",
    ),
    Known(
        "timm",
        "mobilevit*",
        "drop-path-without-residual",
        "stages.*.0.drop_path",
        "timm 1.0.31 models/byobnet.py BottleneckBlock.forward applies self.drop_path(x) and adds a shortcut only "
        "if one exists; MobileViT configs use downsample='' so stride-2 blocks have none, and drop-path zeroes "
        "whole samples",
    ),
    Known(
        "timm",
        "regnetz_b16",
        "drop-path-without-residual",
        "stages.*.0.drop_path",
        "timm 1.0.31 models/byobnet.py: the same BottleneckBlock; the regnetz_b16 config has downsample='' too, so "
        "its stride-2 stages.{1,2,3}.0 have shortcut None (checked: create_shortcut returns None) and drop-path "
        "zeroes whole samples (stages.0.0 has drop_path_rate 0)",
    ),
    Known(
        "timm",
        "tnt_s_patch16_224(attn_drop_rate=*)",
        "inplace-dropout-hazard",
        "blocks.*.attn_*.attn_drop",
        "timm 1.0.31 models/tnt.py Attention: nn.Dropout(attn_drop, inplace=True) on the softmax output; with "
        "attn_drop_rate > 0 loss.backward() fails (reproduced: 'modified by an inplace operation')",
    ),
    Known(
        "torchvision",
        "squeezenet1_*",
        "elementwise-dropout-on-feature-maps",
        "classifier.0",
        "torchvision 0.29 models/squeezenet.py: Dropout(0.5) on the fire9 maps before the final 1x1 conv, as "
        "the SqueezeNet paper places it",
        "design",
    ),
    Known(
        "torchvision",
        "fcn_resnet50",
        "elementwise-dropout-on-feature-maps",
        "classifier.3",
        "torchvision 0.29 models/segmentation/fcn.py FCNHead: Dropout(0.1) on the head's feature maps",
        "design",
    ),
    Known(
        "torchvision",
        "deeplabv3_*",
        "elementwise-dropout-on-feature-maps",
        "classifier.0.project.3",
        "torchvision 0.29 models/segmentation/deeplabv3.py ASPP: Dropout(0.5) after the projection conv",
        "design",
    ),
]


def known_for(lib: str, model: str, slug: str, module: str, severity: str) -> Known | None:
    for k in KNOWN_DEFECTS:
        if (
            k.lib == lib
            and fnmatch.fnmatchcase(model, k.model)
            and k.slug == slug
            and fnmatch.fnmatchcase(module, k.module)
            and (k.kind == "defect" or severity == "info")
        ):
            return k
    return None


# ---- building (called by the auditor through the 'file.py:build_model' target) -----------------


def build_model(
    lib: str,
    name: str,
    head: str = "",
    kind: str = "",
    image_size: int = 0,
    model_type: str = "",
    model_name: str = "",
    **config: Any,
) -> Any:
    """Build one zoo model without weights; the auditor calls this under ``torch.device(...)``."""
    if lib == "torchvision":
        import torchvision.models as tvm

        extra: dict[str, Any] = {"image_size": image_size} if image_size else {}
        if kind == "segmentation":
            extra["weights_backbone"] = None
        return tvm.get_model(name, weights=None, **extra)
    if lib == "timm":
        import timm

        size: dict[str, Any] = {"img_size": image_size} if image_size else {}
        for kwargs in ({"drop_rate": 0.1, "drop_path_rate": 0.1}, {"drop_rate": 0.1}, {}):
            try:
                return timm.create_model(model_name or name, pretrained=False, **kwargs, **size, **config)
            except TypeError:
                continue
        raise RuntimeError(f"timm could not build {name}")
    if lib == "transformers":
        import transformers

        cfg = transformers.AutoConfig.for_model(model_type or name)
        for key, value in config.items():
            setattr(cfg, key, value)
        if image_size and hasattr(cfg, "image_size"):
            cfg.image_size = image_size
        if head[:1].isupper():  # a class name (the auto class cannot pick among several, e.g. DeiT's two)
            return getattr(transformers, head)(cfg)
        auto = {
            "seqcls": transformers.AutoModelForSequenceClassification,
            "causal": transformers.AutoModelForCausalLM,
            "imgcls": transformers.AutoModelForImageClassification,
            "audiocls": transformers.AutoModelForAudioClassification,
            "base": transformers.AutoModel,
        }[head]
        return auto.from_config(cfg)
    raise ValueError(f"unknown library {lib}")


def timm_entry(entry: Entry) -> Entry:
    """timm models at 64x64 when they run at that size (checked on meta: as given, or built with img_size=64
    for fixed-size models), else at their own input size."""
    import timm
    import torch

    cfg = timm.models.get_pretrained_cfg(entry.name)
    size = tuple(getattr(cfg, "input_size", None) or (3, 224, 224))
    small = (((2, size[0], 64, 64), "float"),)
    fixed = cfg is not None and getattr(cfg, "fixed_input_size", False)
    candidates = [Entry(entry.lib, entry.name, small, (*entry.options, ("image_size", 64)) if fixed else entry.options)]
    for candidate in candidates:
        try:
            with torch.device("meta"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = build_model(**candidate.kwargs)
                model(torch.empty(2, size[0], 64, 64))
            return candidate
        except Exception:
            continue
    return Entry(entry.lib, entry.name, (((2, *size), "float"),), entry.options)


# ---- running ------------------------------------------------------------------------------------


@dataclass
class Result:
    lib: str
    name: str
    status: str  # ok | crash | skipped
    seconds: float  # CPU time of the process (all threads): robust to other load on a shared machine
    wall: float = 0.0
    device: str = ""
    params_m: float = 0.0
    findings: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    sites: int = 0


class Timeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise Timeout after ``seconds`` of CPU time (SIGPROF): wall time on a loaded machine is not the
    model's (longformer took 15 s of CPU and 180 s of wall time at load 12)."""

    def _raise(_signum: int, _frame: Any) -> None:
        raise Timeout(f"no result after {seconds} s of CPU time")

    old = signal.signal(signal.SIGPROF, _raise)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


def param_count(entry: Entry) -> int:
    """Parameters, counted on meta (no memory); on the CPU for the few models that cannot be built on meta."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                model = build_model(**entry.kwargs)
        except Exception:
            model = build_model(**entry.kwargs)
    return sum(p.numel() for p in model.parameters())


def inputs_of(entry: Entry) -> tuple[list[tuple[int, ...]], list[str]]:
    return [s for s, _ in entry.inputs], [d for _, d in entry.inputs]


def plain_forward_fails(entry: Entry, device: str) -> str | None:
    """Run the model once without the auditor (eval, no_grad); the error text when that fails too."""
    import torch

    from advisor.audit.load import make_inputs

    shapes, dtypes = inputs_of(entry)
    try:
        with torch.device(device), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build_model(**entry.kwargs)
        model.eval()
        with torch.no_grad():
            model(*make_inputs(shapes, dtypes, model, device))
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return None


def audit_entry(entry: Entry, meta_over: int, timeout: int) -> Result:
    from advisor.audit.load import audit_target

    if entry.lib == "timm":
        entry = timm_entry(entry)
    shapes, dtypes = inputs_of(entry)
    try:
        params = param_count(entry)
    except Exception as exc:
        return Result(entry.lib, entry.name, "skipped", 0.0, error=f"cannot be built: {exc!r}")
    device = "meta" if params > meta_over else "auto"
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        with time_limit(timeout), warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore")
            report = audit_target(
                f"{HERE}:build_model", shapes=shapes, dtypes=dtypes, kwargs=entry.kwargs, device=device
            )
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        seconds, wall = time.process_time() - c0, time.perf_counter() - t0
        text = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
        where = "".join(traceback.format_exception(exc)[-3:]) if not hasattr(exc, "message") else ""
        # the zoo's own input (not the auditor) is at fault when a plain forward fails the same way
        plain = plain_forward_fails(entry, "meta" if device == "meta" else "cpu")
        if plain is not None:
            return Result(
                entry.lib, entry.name, "skipped", seconds, wall, device, params / 1e6, error=f"plain forward: {plain}"
            )
        error = (text + "\n" + where).strip()
        return Result(entry.lib, entry.name, "crash", seconds, wall, device, params / 1e6, error=error)
    seconds, wall = time.process_time() - c0, time.perf_counter() - t0
    findings = []
    for f in report.findings:
        k = known_for(entry.lib, entry.name, f.slug, f.module, f.severity)
        findings.append(
            {
                "slug": f.slug,
                "severity": f.severity,
                "module": f.module,
                "module_class": f.module_class,
                "message": f.message.splitlines()[0],
                "known": k.why if k else None,
            }
        )
    return Result(
        entry.lib,
        entry.name,
        "ok",
        seconds,
        wall,
        report.device,
        params / 1e6,
        findings=findings,
        sites=len(report.sites),
    )


def advisor_source() -> dict[str, str]:
    import advisor

    root = Path(advisor.__file__).resolve().parent.parent
    commit = ""
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    dirty = ""
    with contextlib.suppress(Exception):
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "advisor"], capture_output=True, text=True
        ).stdout.strip()
    return {"path": str(root), "commit": commit, "uncommitted_changes": "yes" if dirty else "no"}


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in ("torch", "torchvision", "timm", "transformers"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[pkg] = importlib.metadata.version(pkg)
    return out


def summarize(results: list[Result]) -> dict[str, Any]:
    libs: dict[str, Any] = {}
    for lib in dict.fromkeys(r.lib for r in results):
        rs = [r for r in results if r.lib == lib]
        done = [r for r in rs if r.status == "ok"]
        secs = [r.seconds for r in done]
        walls = [r.wall for r in done]
        unexpected = Counter(f["slug"] for r in done for f in r.findings if not f["known"])
        known = Counter(f["slug"] for r in done for f in r.findings if f["known"])
        libs[lib] = {
            "models": len(rs),
            "audited": len(done),
            "crashes": sum(r.status == "crash" for r in rs),
            "skipped": sum(r.status == "skipped" for r in rs),
            "models_with_unexpected_findings": sum(any(not f["known"] for f in r.findings) for r in done),
            "unexpected_by_rule": dict(unexpected.most_common()),
            "known_by_rule": dict(known.most_common()),
            "median_s": round(statistics.median(secs), 3) if secs else None,
            "max_s": round(max(secs), 3) if secs else None,
            "median_wall_s": round(statistics.median(walls), 3) if walls else None,
            "max_wall_s": round(max(walls), 3) if walls else None,
        }
    return libs


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--libs", default="torchvision,timm,transformers")
    ap.add_argument("--only", action="append", default=[], help="fnmatch over LIB:NAME (repeatable)")
    ap.add_argument("--limit", type=int, default=0, help="at most N models per library (0: all)")
    ap.add_argument("--json", default="results/audit_zoo.json", help="where to write the JSON result ('' for none)")
    ap.add_argument("--advisor", default="", help="import advisor from this source tree instead of the installed one")
    ap.add_argument("--timeout", type=int, default=120, help="CPU seconds per model before it counts as a crash")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1; see the comment in main)")
    ap.add_argument("--meta-over", type=float, default=1e9, help="parameters above which --device meta is used")
    args = ap.parse_args()
    if args.advisor:
        sys.path.insert(0, str(Path(args.advisor).resolve()))

    libs = [x.strip() for x in args.libs.split(",") if x.strip()]
    entries = [e for e in ZOO if e.lib in libs]
    if args.only:
        entries = [e for e in entries if any(fnmatch.fnmatchcase(e.key, g) for g in args.only)]
    if args.limit:
        entries = [e for lib in libs for e in [x for x in entries if x.lib == lib][: args.limit]]

    import torch

    # one thread: on a shared machine, OpenMP threads that spin while other processes hold the cores make
    # every op many times slower (measured here: a small training step 30x slower with 2 threads at load 12)
    torch.set_num_threads(args.threads)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    src = advisor_source()
    ver = versions()
    print(
        f"advisor under test: {src['path']} @ {src['commit'][:12]} (uncommitted changes: {src['uncommitted_changes']})"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in ver.items()))
    import_s: dict[str, float] = {}
    for lib in libs:
        t0 = time.perf_counter()
        __import__(lib)
        import_s[lib] = round(time.perf_counter() - t0, 2)
    # import cost is not part of a model's time
    import advisor.audit.api
    import advisor.audit.load  # noqa: F401

    results: list[Result] = []
    for entry in entries:
        r = audit_entry(entry, int(args.meta_over), args.timeout)
        results.append(r)
        unexpected = [f for f in r.findings if not f["known"]]
        status = r.status.upper() if r.status != "ok" else "ok"
        line = f"[{r.lib:12}] {r.name:34} {status:8} cpu {r.seconds:6.2f} s  wall {r.wall:6.2f} s  {r.device:5}"
        line += f" {r.params_m:8.1f}M"
        line += f"  findings {len(r.findings)} (unexpected {len(unexpected)})"
        print(line, flush=True)
        for f in unexpected:
            print(f"      {f['severity']:7} {f['slug']:36} {f['module'] or '<root>'} ({f['module_class']})")
        if r.error:
            print("      " + r.error.replace("\n", "\n      ")[:1500])
        gc.collect()

    summary = summarize(results)
    print(
        "\nper library (seconds per model = CPU time of one audit_target call, builds included, after the library"
        " import; wall time in brackets, inflated by other load on a shared machine):"
    )
    for lib, s in summary.items():
        print(
            f"  {lib:12} models {s['models']:3}  audited {s['audited']:3}  crashes {s['crashes']:2}  "
            f"skipped {s['skipped']:2}  with unexpected findings {s['models_with_unexpected_findings']:2}  "
            f"median {s['median_s']} s ({s['median_wall_s']})  max {s['max_s']} s ({s['max_wall_s']})"
            f"  import {import_s.get(lib)} s"
        )
        if s["unexpected_by_rule"]:
            print("      unexpected by rule: " + ", ".join(f"{k} {v}" for k, v in s["unexpected_by_rule"].items()))
        if s["known_by_rule"]:
            print("      known defects by rule: " + ", ".join(f"{k} {v}" for k, v in s["known_by_rule"].items()))
    audited = [r for r in results if r.status == "ok"]
    crashes = sum(r.status == "crash" for r in results)
    unexpected_total = sum(1 for r in audited for f in r.findings if not f["known"])
    median = statistics.median(r.seconds for r in audited) if audited else float("inf")
    missed_known = [
        {**asdict(k), "model": f"{r.lib}:{r.name}"}
        for k in KNOWN_DEFECTS
        if k.kind == "defect"
        for r in audited
        if r.lib == k.lib and fnmatch.fnmatchcase(r.name, k.model) and not any(f["known"] == k.why for f in r.findings)
    ]
    targets = {
        "crashes == 0": crashes == 0,
        "unexpected findings == 0": unexpected_total == 0,
        f"median audit < {TARGET_MEDIAN_S} s (CPU time)": median < TARGET_MEDIAN_S,
    }
    # A subset run (--only, --limit, --libs) cannot reach 100 models: that target is then not checked,
    # and says so instead of printing "met".
    subset = bool(args.only or args.limit or len(libs) < 3)
    if not subset:
        targets["models audited >= 100"] = len(audited) >= 100
    print(
        f"\ntotal: {len(results)} models, {len(audited)} audited, {crashes} crashes, "
        f"{sum(r.status == 'skipped' for r in results)} skipped, {unexpected_total} unexpected findings "
        f"on {sum(any(not f['known'] for f in r.findings) for r in audited)} models, median {median:.2f} s CPU"
    )
    for k in missed_known:
        print(f"note: known defect not reported: {k['model']} {k['slug']} {k['module']}")
    print(f"load average at end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for name, ok in targets.items():
        print(f"target {name}: {'met' if ok else 'NOT met'}")
    if subset:
        print("target models audited >= 100: not checked (subset run: --only, --limit or --libs)")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "advisor": src,
            "versions": ver,
            "import_seconds": import_s,
            "summary": summary,
            "targets": targets,
            "missed_known_defects": missed_known,
            "models": [asdict(r) for r in results],
        }
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        tmp.replace(out)
        print(f"wrote {out}")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
