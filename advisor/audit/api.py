"""``audit(model, example_inputs) -> Report``: the auditor's Python API.

Runs the model twice (train mode, then eval mode; a third eval pass with a different seed compares
outputs when the model holds real values), records what executes, applies the rules, and returns a
:class:`~advisor.audit.report.Report`. The model is left as it was found: training flags, buffers
(BatchNorm statistics) and the global random-number generators are restored afterwards.
"""

from __future__ import annotations

import contextlib
import random
import re
import sys
import traceback
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

from advisor.audit.config import AllowRule, coerce_allow, match
from advisor.audit.report import SEVERITY_RANK, Finding, InputSpec, Location, Report, Site, Summary
from advisor.errors import ModelLoadError, UsageError

DETERMINISM = "eval_determinism"
SKIPPED_META = (
    "skipped: the model is on the meta device, which has no values to compare; random calls made in the "
    "eval forward were still checked (use --device cpu for the full check)"
)


class ModelRunError(ModelLoadError):
    """The model raised during a traced forward pass (usually an input it does not accept)."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        layer: str | None = None,
        layer_class: str | None = None,
        original: BaseException | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.layer = layer
        self.layer_class = layer_class
        self.original = original


def audit(
    model: Any,
    example_inputs: Any,
    *,
    allow: Iterable[str | AllowRule] = (),
    check_determinism: bool = True,
    seed: int = 0,
    target: str | None = None,
    notes: Iterable[str] = (),
    fallback_location: Location | None = None,
    include_third_party: bool = False,
    traces_out: list[Any] | None = None,
) -> Report:
    """Audit the dropout of a built ``nn.Module``.

    ``example_inputs`` is one tensor, a tuple/list of positional inputs, or a dict of keyword inputs.
    A model on the meta device gets its inputs moved there. ``allow`` takes ``MODULE_GLOB:RULE``
    entries (see :mod:`advisor.audit.config`); suppressed findings land in ``report.allowed``.
    Findings whose fix lies in an installed package (torchvision, timm, transformers ...) are reported
    as info, saying so, unless ``include_third_party``. TorchScript modules, ``torch.export`` programs
    and other frozen graphs are audited as given (see :mod:`advisor.audit.frozen`); an
    ``ExportedProgram`` is audited through its ``.module()``.
    Raises :class:`ModelRunError` when the model rejects the inputs, :class:`UsageError` for a model
    whose parameters are on several devices. ``traces_out``, if given, receives the recorded
    :class:`~advisor.audit.trace.Trace` of each pass (train first), so that the model-aware advisor
    reads the same forward instead of tracing it again.
    """
    import torch
    import torch.nn as nn

    from advisor.audit import frozen
    from advisor.audit import trace as tr
    from advisor.audit.analysis import Analysis

    if isinstance(model, torch.export.ExportedProgram):
        model = model.module()
    if not isinstance(model, nn.Module):
        raise UsageError(
            f"audit() needs a torch.nn.Module, got {type(model).__name__}", hint="pass the built model, e.g. Net()"
        )
    allow_rules = coerce_allow(allow)
    device = _model_device(model)
    args, kwargs = _split_inputs(example_inputs, device)
    kind = frozen.frozen_kind(model)
    if kind is not None and kind != frozen.FX:
        return _audit_frozen(
            model, kind, args, kwargs, device, allow_rules, seed, target, list(notes), fallback_location
        )
    paths = tr.module_paths(model)
    unregistered = tr.unregistered_modules(model, paths)
    paths.update({i: path for i, (path, _) in unregistered.items()})
    numeric = check_determinism and device.type != "meta"

    modes = [(m, m.training) for m in model.modules()]
    buffers = _snapshot_buffers(model)
    traces: list[tr.Trace] = []
    passes = [("train", True, seed), ("eval", False, seed + 1)]
    if numeric:
        passes.append(("eval", False, seed + 2))
    extra = [m for _, m in unregistered.values()]
    try:
        with (
            _quiet(),
            torch.no_grad(),
            _forked_rng(device),
            _device_ctx(device),
            tr.Hooks(model, extra) as hooks,
        ):
            for name, training, pass_seed in passes:
                _seed_all(pass_seed)
                model.train(training)
                _restore_buffers(buffers)
                tracer = tr.Tracer(model, paths, fingerprint=numeric and not training, fast_meta=device.type == "meta")
                hooks.tracer = tracer
                try:
                    # fresh copies: an in-place first layer must not change the next pass's input (or the user's)
                    pass_args, pass_kwargs = _clone(args), _clone(kwargs)
                    traces.append(tracer.record(model, pass_args, pass_kwargs, training=training))
                except tr.TraceFailure as failure:
                    raise _run_error(failure, name, args, kwargs, model) from None
    finally:
        for m, was in modes:
            m.training = was
        _restore_buffers(buffers)

    if traces_out is not None:
        traces_out.extend(traces)
    analysis = Analysis(
        model,
        traces[0],
        traces[1],
        traces[2] if numeric else None,
        fallback_location=fallback_location,
        unregistered=unregistered,
        include_third_party=include_third_party,
    )
    analysis.run()
    report_notes = [*notes, *analysis.notes]
    if kind == frozen.FX:
        report_notes.append(
            "a torch.fx GraphModule: audited through its submodules; flags traced as constants stay as traced"
        )
    checks = {
        "train_forward": "ran",
        "eval_forward": "ran",
        DETERMINISM: "ran" if numeric else (SKIPPED_META if device.type == "meta" else "skipped: turned off"),
    }
    return _report(
        model,
        target,
        device,
        args,
        kwargs,
        checks,
        report_notes,
        analysis.site_models(),
        analysis.findings,
        allow_rules,
    )


def _report(
    model: Any,
    target: str | None,
    device: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    checks: dict[str, str],
    notes: list[str],
    sites: list[Site],
    findings: list[Finding],
    allow_rules: list[AllowRule],
) -> Report:
    from advisor.audit import rules as rl
    from advisor.audit import trace as tr

    kb_note = rl.kb_note()
    if kb_note:
        notes.append(kb_note)
    active, allowed = _apply_allow(findings, allow_rules)
    used = {f.allowed_by for f in allowed}
    for rule in allow_rules:
        if str(rule) not in used:
            notes.append(f"allow entry '{rule}' ({rule.source}) matched no finding")
    order = {s.id: i for i, s in enumerate(sites)}
    active.sort(key=lambda f: (-SEVERITY_RANK[f.severity], order.get(f.site or "", 1 << 30), f.module, f.slug))
    summary = Summary(allowed=len(allowed))
    for f in active:
        setattr(summary, f.severity, getattr(summary, f.severity) + 1)
    return Report(
        target=target,
        model_class=type(model).__name__,
        device=str(device),
        inputs=[
            InputSpec(shape=list(tr.shape_of(t)), dtype=str(t.dtype).removeprefix("torch."))
            for t in list(tr.iter_tensors(args)) + list(tr.iter_tensors(kwargs))
        ],
        checks=checks,
        notes=notes,
        sites=sites,
        findings=active,
        allowed=allowed,
        summary=summary,
    )


def _audit_frozen(
    model: Any,
    kind: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    device: Any,
    allow_rules: list[AllowRule],
    seed: int,
    target: str | None,
    notes: list[str],
    fallback_location: Location | None,
) -> Report:
    """A frozen graph, audited as given: its dropout nodes read from the graph, two forwards compared."""
    import torch

    from advisor.audit import frozen
    from advisor.audit.rules import frozen_graph, nondeterministic, rule_info

    nodes = frozen.graph_dropouts(model, kind)
    was_training = model.training
    switchable = frozen.switch_mode(model, False)
    outs = []
    try:
        with _quiet(), torch.no_grad(), _forked_rng(device), _device_ctx(device):
            for k in (1, 2):
                _seed_all(seed + k)
                try:
                    outs.append(model(*_clone(args), **_clone(kwargs)))
                except Exception as exc:
                    raise _frozen_run_error(exc, kind, args, kwargs) from None
    finally:
        if switchable:
            frozen.switch_mode(model, was_training)

    def finding(slug: str, message: str, fix: str) -> Finding:
        info = rule_info(slug)
        return Finding(
            rule_id=info.id,
            slug=slug,
            severity=info.severity,
            title=info.title,
            module="",
            module_class=type(model).__name__,
            message=message,
            fix=fix,
            citations=list(info.citations),
            location=fallback_location,
        )

    findings = []
    baked = [n for n in nodes if n.train is True and (n.p is None or n.p > 0)]
    for node in baked:
        findings.append(finding(frozen_graph.SLUG, *frozen_graph.message(kind, node)))
    numeric = device.type != "meta"
    if numeric and not baked and frozen.outputs_differ(outs[0], outs[1]):
        findings.append(
            finding(
                nondeterministic.SLUG,
                f"the {kind} is random in eval mode: two forwards on the same input gave different outputs.",
                "find the random op in the original nn.Module (audit it), then trace or export it again",
            )
        )
    mode = "in eval mode" if switchable else "as given, since its mode cannot be switched (eval() is not supported)"
    notes.append(
        f"a {kind} is a frozen graph and was audited as one: {len(nodes)} dropout node(s) read from the graph, "
        f"two forwards run {mode} and compared; the placement rules need the original nn.Module"
    )
    sites = [
        Site(
            id=f"S{i}",
            module=node.name,
            module_class=type(model).__name__,
            source="graph",
            op=node.op,
            kind="dropout",
            p=None if node.p is None or node.p != node.p else node.p,
            calls=1,
            eval_calls=1 if node.train is True else 0,
            input_shape=None,
        )
        for i, node in enumerate(nodes, 1)
    ]
    checks = {
        "train_forward": "skipped: a frozen graph, its train mode is the one it was built in",
        "eval_forward": "ran" if switchable else "ran as given (the mode cannot be switched)",
        DETERMINISM: "ran" if numeric else SKIPPED_META,
    }
    return _report(model, target, device, args, kwargs, checks, notes, sites, findings, allow_rules)


def _frozen_run_error(exc: BaseException, kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ModelRunError:
    reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}".rstrip(": ")
    return ModelRunError(
        f"the {kind} failed on input {describe_inputs(args, kwargs)}: {reason}",
        "a traced or exported graph accepts only inputs like the example it was built with (shape, dtype)",
        original=exc,
    )


def _apply_allow(findings: list[Finding], rules: list[AllowRule]) -> tuple[list[Finding], list[Finding]]:
    active, allowed = [], []
    for f in findings:
        hit = match(rules, f.module, f.slug)
        if hit is None:
            active.append(f)
        else:
            allowed.append(f.model_copy(update={"allowed_by": str(hit)}))
    return active, allowed


# ---- helpers ------------------------------------------------------------------------------------


def _model_device(model: Any) -> Any:
    """The one device every parameter and buffer is on; UsageError when they are spread over several."""
    import itertools

    import torch

    devices = {t.device for t in itertools.chain(model.parameters(), model.buffers())}
    if not devices:
        return torch.device("cpu")
    if len(devices) == 1:
        return next(iter(devices))
    names = ", ".join(sorted(str(d) for d in devices))
    if any(d.type == "meta" for d in devices):
        raise UsageError(
            f"the model is partly on the meta device ({names}): some tensors were created outside "
            "`with torch.device('meta')` (the legacy torch.Tensor(n) constructor does that)",
            hint="build it on the CPU, or move the rest to meta first: model.to('meta')",
        )
    raise UsageError(
        f"the model's parameters and buffers are on several devices ({names})",
        hint="move it to one device before auditing, e.g. model.to('cpu')",
    )


def _split_inputs(example_inputs: Any, device: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    import torch

    def move(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.device != device:
            return x.to(device)
        if isinstance(x, (tuple, list)):
            return type(x)(move(v) for v in x)
        if isinstance(x, dict):
            return {k: move(v) for k, v in x.items()}
        return x

    if isinstance(example_inputs, dict):
        return (), move(example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return tuple(move(v) for v in example_inputs), {}
    return (move(example_inputs),), {}


def _clone(x: Any) -> Any:
    import torch

    if isinstance(x, torch.Tensor):
        return x.clone()
    if isinstance(x, (tuple, list)):
        return type(x)(_clone(v) for v in x)
    if isinstance(x, dict):
        return {k: _clone(v) for k, v in x.items()}
    return x


def _snapshot_buffers(model: Any) -> list[tuple[Any, str, Any, Any]]:
    saved = []
    for m in model.modules():
        for name, b in m._buffers.items():
            if b is not None:
                saved.append((m, name, b, b.detach().clone()))
    return saved


def _restore_buffers(saved: list[tuple[Any, str, Any, Any]]) -> None:
    import torch

    with torch.no_grad():
        for m, name, original, copy in saved:
            m._buffers[name] = original
            if original.shape == copy.shape:
                original.copy_(copy)


def _seed_all(seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    random.seed(seed)
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed(seed)


@contextlib.contextmanager
def _forked_rng(device: Any) -> Iterator[None]:
    """Leave every global random-number generator as it was (torch, Python, numpy)."""
    import torch

    py_state = random.getstate()
    np = sys.modules.get("numpy")
    np_state = np.random.get_state() if np is not None else None
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py_state)
        if np is not None and np_state is not None:
            np.random.set_state(np_state)


@contextlib.contextmanager
def _device_ctx(device: Any) -> Iterator[None]:
    """On meta, tensors created inside forward (torch.arange, torch.ones) must be meta tensors too."""
    import torch

    if device.type == "meta":
        with torch.device("meta"):
            yield
    else:
        yield


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch's own dropout warnings become findings; the rest would only repeat per pass."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def describe_inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    from advisor.audit import trace as tr

    parts = [_tensor_desc(t) for t in tr.iter_tensors(args)]
    parts += [f"{k}={_tensor_desc(v)}" for k, v in kwargs.items() if hasattr(v, "shape")]
    return ", ".join(parts) or "no tensors"


def _tensor_desc(t: Any) -> str:
    dtype = str(t.dtype).removeprefix("torch.")
    return f"{dtype}[{', '.join(str(int(s)) for s in t.shape)}]"


def user_traceback_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame of the traceback that lies in the user's code (not torch, not ours)."""
    from advisor.audit import trace as tr

    frames = traceback.extract_tb(exc.__traceback__)
    for fs in reversed(frames):
        if not tr._internal(fs.filename):
            return fs
    return None


# TypeError texts of a forward called with the wrong number of inputs (Python 3.11-3.14)
_ARITY = re.compile(
    r"forward\(\) (missing \d+ required positional argument|takes \d+ positional arguments? but \d+ (were|was) given)"
)


def _run_error(failure: Any, mode: str, args: tuple[Any, ...], kwargs: dict[str, Any], model: Any) -> ModelRunError:
    import torch.nn as nn

    from advisor.audit import trace as tr

    exc = failure.original
    if isinstance(exc, KeyboardInterrupt):
        raise exc
    frames = traceback.extract_tb(exc.__traceback__)
    if frames and frames[-1].filename.startswith(tr._OUR_DIR) and not getattr(exc, "_advisor_from_model", False):
        raise exc  # a bug in the auditor, not in the user's model: keep the traceback
    shapes = describe_inputs(args, kwargs)
    reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}".rstrip(": ")
    stack = failure.stack
    layer = layer_class = None
    hint = "pass inputs of the shape and dtype the model expects (CLI: --input-shape, --input-dtype)"
    cause = error_cause(exc)
    if cause == "device":
        hint = (
            "the model's own tensors are on different devices, which is not about your input: "
            "audit it on the CPU (--device cpu), or create every tensor under the model's device"
        )
    elif isinstance(exc, TypeError) and _ARITY.search(str(exc)):
        hint = (
            "the model's forward takes another number of inputs than was given: pass one tensor per positional "
            "input of forward, in order (CLI: one --input-shape, and --input-dtype, per input)"
        )
    elif cause == "other":
        hint = "the error comes from the model's code, not from the input's shape: fix it at the line above"
    if stack:
        path, module, in_shapes = stack[-1]
        layer, layer_class = path, type(module).__name__
        if path:
            shown = ", ".join("(" + ", ".join(map(str, s)) + ")" for s in in_shapes) or "no tensors"
            where = f"layer '{path}' ({layer_class}, input {shown})"
        else:
            where = f"{layer_class}.forward"
        if cause in ("shape", "dtype"):
            hint = _input_hint(path, module, exc, args, kwargs, cause) or hint
    else:
        where = f"{type(model).__name__}"
    message = f"the {mode}-mode forward on input {shapes} failed: {where} raised {reason}"
    fs = user_traceback_frame(exc)
    if fs is not None:
        message += f"\n  at {fs.filename}:{fs.lineno}" + (f": {fs.line.strip()}" if fs.line else "")
    if stack and isinstance(stack[-1][1], nn.Module) and "more than 1 value per channel" in str(exc):
        hint = "BatchNorm needs a batch of at least 2 in train mode: make the first size of --input-shape >= 2"
    return ModelRunError(message, hint, layer=layer, layer_class=layer_class, original=exc)


_DEVICE_ERRORS = ("on the same device", "is not on the expected device", "device meta", "meta tensor", "devices")
_DTYPE_ERRORS = (
    "scalar type",
    "dtype",
    "Input type (",
    "not implemented for 'Long'",
    "not implemented for 'Int'",
    "Expected tensor for argument",
)
_SHAPE_ERRORS = ("shape", "size", "dimension", "must match", "xpected", "-D", "channels", "batched")


def error_cause(exc: BaseException) -> str:
    """What a forward's error is about, from its message: 'device', 'dtype', 'shape' or 'other'."""
    text = str(exc)
    if "index out of range" in text or "out of bounds" in text:
        return "shape"  # token ids above the vocabulary: an input problem the shape hint covers
    if any(k in text for k in _DEVICE_ERRORS):
        return "device"
    if any(k in text for k in _DTYPE_ERRORS):
        return "dtype"
    if any(k in text for k in _SHAPE_ERRORS) or isinstance(exc, (IndexError, ValueError)):
        return "shape"
    return "other"


def _input_hint(
    path: str, module: Any, exc: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any], cause: str
) -> str | None:
    import torch
    import torch.nn as nn

    from advisor.audit import trace as tr

    text = str(exc)
    tensors = [t for t in [*tr.iter_tensors(args), *tr.iter_tensors(kwargs)] if isinstance(t, torch.Tensor)]
    floats = any(t.is_floating_point() for t in tensors)
    ints = any(not t.is_floating_point() for t in tensors)
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        if floats or "Long" in text:
            return "token ids must be integers: pass --input-dtype long"
        return f"token ids must be below num_embeddings={module.num_embeddings}"
    if cause == "dtype":
        if ints:
            return (
                f"'{path}' ({type(module).__name__}) takes floating-point input, but the input is integer "
                "(--input-dtype long): the shape is not the problem; use --input-dtype float for this input"
            )
        return "the model wants integer inputs (token ids): pass --input-dtype long"
    if isinstance(module, nn.Linear):
        return f"'{path}' (Linear) expects a last dimension of {module.in_features}; adjust --input-shape"
    if isinstance(module, nn.modules.conv._ConvNd):
        n = len(module.kernel_size)
        dims = ", ".join(["N", str(module.in_channels)] + ["..."] * n)
        return f"this {type(module).__name__} expects {n + 2}-D input ({dims}); adjust --input-shape"
    if isinstance(module, nn.RNNBase):
        return f"this {type(module).__name__} expects a last dimension of {module.input_size}; adjust --input-shape"
    if "Long" in text or "Int" in text:
        return "the model wants integer inputs: pass --input-dtype long"
    return None
