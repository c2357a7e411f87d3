"""Load a user's model from ``path/to/file.py:NAME`` or ``package.module:NAME`` and build it.

NAME is a class, a factory function, or a module-level ``nn.Module`` instance. Building happens on the
meta device when asked (``--device meta``) or when it pays off (``auto`` for large models), so that a
70B-parameter structure costs no weight memory; ``auto`` falls back to the CPU when the model cannot
be built or run on meta, and says so. Every failure becomes a :class:`ModelLoadError` that shows the
user's own error and the file and line it came from, never our traceback.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import inspect
import json
import math
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.audit.report import Location
from advisor.errors import ModelLoadError, UsageError

#: ``auto`` runs models with less weight memory than this on the CPU, so that eval outputs can be compared
AUTO_CPU_BYTES = 512 * 2**20
DEVICES = ("auto", "meta", "cpu")


@dataclass
class Target:
    spec: str
    factory: Any
    display: str  # "Net" or "build_model"
    file: Path | None  # the user's file, when given as a path
    location: Location | None


@dataclass
class Built:
    model: Any
    device: str
    notes: list[str] = field(default_factory=list)


# ---- parsing ------------------------------------------------------------------------------------


def parse_shape(text: str) -> tuple[int, ...]:
    """Parse an input shape: '8,3,32,32', '8x3x32x32' or '(8, 3, 32, 32)' -> (8, 3, 32, 32).

    Every size must be a positive integer; an empty or non-numeric size ('8,x', '8,,16') is refused,
    never dropped. A single trailing comma, as in a Python tuple '(8,)', is allowed.

    Raises:
        UsageError: when the text is not a list of positive integers.
    """
    raw = text.replace(" ", "").strip("()[]")
    parts = re.split(r"[,xX]", raw)
    if len(parts) > 1 and parts[-1] == "" and raw.endswith(","):
        parts.pop()
    if not raw or not all(p.isdigit() and p.isascii() and int(p) > 0 for p in parts):
        raise UsageError(
            f"--input-shape '{text}' is not a list of positive integers",
            hint="write the sizes separated by commas, batch first: --input-shape 8,3,32,32",
        )
    return tuple(int(p) for p in parts)


def parse_kwargs(text: str | None) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"--kwargs is not valid JSON: {exc.msg} (column {exc.colno})",
            hint='give a JSON object in single quotes, e.g. --kwargs \'{"depth": 50, "num_classes": 10}\'',
        ) from None
    if not isinstance(value, dict):
        raise UsageError(
            f"--kwargs must be a JSON object, got {type(value).__name__}",
            hint="e.g. --kwargs '{\"depth\": 50}'",
        )
    return value


def split_target(spec: str) -> tuple[str, str]:
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name or not name.replace("_", "a").replace(".", "a").isalnum():
        raise UsageError(
            f"target '{spec}' is not FILE.py:NAME or package.module:NAME",
            hint="for example models/net.py:Net or my_package.models:build_model",
        )
    return where, name


# ---- importing ----------------------------------------------------------------------------------


def _user_frame(exc: BaseException, prefer: Path | None = None) -> traceback.FrameSummary | None:
    from advisor.audit.api import user_traceback_frame

    frames = traceback.extract_tb(exc.__traceback__)
    if prefer is not None:
        for fs in reversed(frames):
            if Path(fs.filename).resolve() == prefer:
                return fs
    last = user_traceback_frame(exc)
    if last is not None and "importlib" not in last.filename:
        return last
    return None


def _where(exc: BaseException, prefer: Path | None = None) -> str:
    if isinstance(exc, SyntaxError) and exc.filename:
        text = f"\n  at {exc.filename}:{exc.lineno}"
        if exc.text:
            text += f": {exc.text.strip()}"
        return text
    fs = _user_frame(exc, prefer)
    if fs is None:
        return ""
    return f"\n  at {fs.filename}:{fs.lineno}" + (f": {fs.line.strip()}" if fs.line else "")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _import_file(path: Path) -> Any:
    if not path.exists():
        raise ModelLoadError(f"no such file: {path}", hint="check the path before the ':'")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder", hint="name a .py file: path/to/model.py:Net")
    resolved = path.resolve()
    name = "dropout_advisor_target_" + "".join(c if c.isalnum() else "_" for c in resolved.stem)
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import {path}", hint="the target file must be a Python source file (.py)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # inspect.getsourcefile and dataclasses need it registered
    folder = str(resolved.parent)
    sys.path.insert(0, folder)  # sibling imports (from layers import Block) work as when run as a script
    try:
        with _lenient_dropout_rates():
            spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ModelLoadError(
            f"importing {path} failed: {_reason(exc)}{_where(exc, resolved)}",
            hint="fix the error above in your file; it happens on import, before any model is built",
        ) from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    return module


def _import_module(dotted: str) -> Any:
    sys.path.insert(0, os.getcwd())
    try:
        with _lenient_dropout_rates():
            return importlib.import_module(dotted)
    except ModuleNotFoundError as exc:
        if exc.name and (dotted == exc.name or dotted.startswith(exc.name + ".")):
            raise ModelLoadError(
                f"no module named '{exc.name}' (from target '{dotted}')",
                hint="run from the folder that contains the package, install it, or give a file: path/to/model.py:Net",
            ) from None
        raise ModelLoadError(
            f"importing {dotted} failed: {_reason(exc)}{_where(exc)}",
            hint="install the missing package or fix the import in your code",
        ) from None
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ModelLoadError(
            f"importing {dotted} failed: {_reason(exc)}{_where(exc)}",
            hint="fix the error above in your code; it happens on import, before any model is built",
        ) from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(os.getcwd())


def resolve(spec: str) -> Target:
    """Import the target and return the factory it names (no model is built yet)."""
    where, name = split_target(spec)
    is_file = where.endswith(".py") or "/" in where or os.sep in where
    if is_file:
        path = Path(where)
        module = _import_file(path)
        file: Path | None = path.resolve()
    else:
        module = _import_module(where)
        file = None
    obj: Any = module
    for part in name.split("."):
        if not hasattr(obj, part):
            public = [n for n in dir(module) if not n.startswith("_")]
            candidates = [n for n in public if inspect.isclass(getattr(module, n)) or callable(getattr(module, n))]
            close = difflib.get_close_matches(part, candidates, n=3, cutoff=0.5)
            hint = (
                "did you mean " + ", ".join(f"'{c}'" for c in close) + "?"
                if close
                else "it defines: " + (", ".join(sorted(candidates)[:12]) or "nothing public")
            )
            raise ModelLoadError(f"{where} has no '{name}'", hint=hint)
        obj = getattr(obj, part)
    return Target(spec=spec, factory=obj, display=name, file=file, location=_location(obj))


def _location(obj: Any) -> Location | None:
    target = obj if (inspect.isclass(obj) or inspect.isfunction(obj)) else type(obj)
    try:
        file = inspect.getsourcefile(target)
        _, line = inspect.getsourcelines(target)
    except (OSError, TypeError):
        return None
    if file is None:
        return None
    return Location(file=file, line=max(line, 1), symbol=getattr(target, "__qualname__", None))


# ---- building -----------------------------------------------------------------------------------


def check_arguments(factory: Callable[..., Any], name: str, kwargs: dict[str, Any]) -> None:
    """Name missing and unknown constructor arguments before calling (a clearer error than TypeError)."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    params = sig.parameters.values()
    required = [
        p.name
        for p in params
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in kwargs
    ]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    known = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = [k for k in kwargs if k not in known] if not takes_any else []
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        raise UsageError(
            f"{name}() takes no argument '{unknown[0]}'" + (f"; did you mean '{close[0]}'?" if close else ""),
            hint=f"{name}() accepts: {', '.join(known) or 'no arguments'}",
        )
    if required:
        example = ", ".join(f'"{r}": ...' for r in required)
        raise ModelLoadError(
            f"{name}() needs argument{'s' if len(required) > 1 else ''} {', '.join(required)}",
            hint=f"pass {'them' if len(required) > 1 else 'it'} with --kwargs '{{{example}}}'",
        )


@contextlib.contextmanager
def _lenient_dropout_rates() -> Iterator[None]:
    """Let nn.Dropout(p) with p outside [0, 1] be built, so the audit reports it (DRP204) instead of dying."""
    import torch.nn as nn

    base = nn.modules.dropout._DropoutNd
    original = base.__init__

    def init(self: Any, p: float = 0.5, inplace: bool = False) -> None:
        if isinstance(p, (int, float)) and not 0 <= p <= 1:
            original(self, 0.5, inplace)
            self.p = p
        else:
            original(self, p, inplace)

    base.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        base.__init__ = original  # type: ignore[method-assign]


def build(target: Target, kwargs: dict[str, Any], device: str) -> Any:
    """Call the factory on ``device`` ('meta' or 'cpu'); errors show the user's own line."""
    import torch
    import torch.nn as nn

    factory = target.factory
    if isinstance(factory, nn.Module):
        if kwargs:
            raise UsageError(
                f"'{target.display}' is an already built model; --kwargs cannot apply",
                hint="name the class or factory function instead, or drop --kwargs",
            )
        return factory
    if not callable(factory):
        raise ModelLoadError(
            f"'{target.display}' is a {type(factory).__name__}, not a model class or factory",
            hint="name an nn.Module subclass or a function that returns one",
        )
    check_arguments(factory, target.display, kwargs)
    prefer = target.file
    try:
        with _lenient_dropout_rates(), torch.device(device), warnings.catch_warnings():
            # reported as rnn-dropout-single-layer instead
            warnings.filterwarnings("ignore", message="dropout option adds dropout after all but last")
            model = factory(**kwargs)
    except (ModelLoadError, UsageError):
        raise
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ModelLoadError(
            f"building {target.display}() on {device} failed: {_reason(exc)}{_where(exc, prefer)}",
            hint="fix the error in the constructor, or check --kwargs",
        ) from None
    if isinstance(model, torch.export.ExportedProgram):
        model = model.module()  # audited as the frozen graph it is (see advisor.audit.frozen)
    if not isinstance(model, nn.Module):
        raise ModelLoadError(
            f"{target.display}() returned {type(model).__name__}, not a torch.nn.Module",
            hint="the target must be an nn.Module subclass or a function that returns one",
        )
    return model


def weight_bytes(model: Any) -> int:
    return sum(t.numel() * t.element_size() for t in model.parameters()) + sum(
        t.numel() * t.element_size() for t in model.buffers()
    )


#: the largest example input the audit builds: beyond it, refuse before allocating (issue 12)
MAX_INPUT_BYTES = 2 * 2**30
#: the activations the audit keeps alive in one traced forward (every tensor of the pass is kept)
MAX_ACTIVATION_BYTES = 8 * 2**30


def input_bytes(shapes: Sequence[tuple[int, ...]], dtypes: Sequence[str]) -> int:
    """Bytes of the example inputs: float32 (4 bytes) or int64 token ids (8 bytes) per element."""
    if len(dtypes) == 1:
        dtypes = list(dtypes) * len(shapes)
    return sum(math.prod(s) * (8 if d == "long" else 4) for s, d in zip(shapes, dtypes, strict=True))


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.3g} MiB"


def check_input_size(shapes: Sequence[tuple[int, ...]], dtypes: Sequence[str]) -> None:
    """Refuse an example input too large to allocate, before anything is built (UsageError, exit 2)."""
    total = input_bytes(shapes, dtypes)
    if total > MAX_INPUT_BYTES:
        shown = " ".join(",".join(map(str, s)) for s in shapes)
        raise UsageError(
            f"--input-shape {shown} needs {_gib(total)} for the example input alone (the audit allows "
            f"{_gib(MAX_INPUT_BYTES)}), and a forward pass keeps several times that in activations",
            hint="dropout placement does not depend on the size: audit a small input, e.g. batch 2 and the "
            "smallest spatial or sequence size the model accepts (-s 2,3,32,32)",
        )


def estimate_activation_bytes(model: Any, shapes: Sequence[tuple[int, ...]], dtypes: Sequence[str]) -> int | None:
    """Bytes of every tensor one train-mode forward creates, measured on a meta copy of the inputs.

    ``model`` must be on the meta device; None when the meta forward fails (the audit then finds out).
    """
    import torch

    from advisor.audit import trace as tr

    inputs = make_inputs(shapes, dtypes, model, "meta")
    paths = tr.module_paths(model)
    tracer = tr.Tracer(model, paths, fast_meta=True)
    was = [(m, m.training) for m in model.modules()]
    try:
        with torch.no_grad(), torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.train(True)
            trace = tracer.run(model, tuple(inputs), {}, training=True)
    except Exception:
        return None
    finally:
        for m, t in was:
            m.training = t
    total = 0
    for ev in trace.events:
        for shape in ev.out_shapes:
            total += math.prod(shape) * 4
    return total


def make_inputs(shapes: Sequence[tuple[int, ...]], dtypes: Sequence[str], model: Any, device: str) -> list[Any]:
    """Example inputs: float from a seeded normal; long token ids below the smallest embedding table."""
    import torch
    import torch.nn as nn

    if len(dtypes) == 1:
        dtypes = list(dtypes) * len(shapes)
    vocab = min(
        (m.num_embeddings for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))), default=2
    )
    gen = torch.Generator().manual_seed(0)
    out = []
    for shape, dtype in zip(shapes, dtypes, strict=True):
        if device == "meta":
            out.append(torch.empty(shape, dtype=torch.long if dtype == "long" else torch.float32, device="meta"))
        elif dtype == "long":
            out.append(torch.randint(0, max(vocab, 1), shape, generator=gen))
        else:
            out.append(torch.randn(shape, generator=gen))
    return out


def audit_target(
    spec: str,
    *,
    shapes: Sequence[tuple[int, ...]],
    dtypes: Sequence[str] = ("float",),
    kwargs: dict[str, Any] | None = None,
    device: str = "auto",
    allow: Sequence[Any] = (),
    progress: Callable[[str], None] | None = None,
    include_third_party: bool = False,
) -> Any:
    """Resolve, build and audit a target; returns the Report. ``device``: auto, meta or cpu.

    Raises UsageError (exit 2) for bad arguments and for an example input too large to allocate,
    ModelLoadError for a target that cannot be imported, built or run.
    """
    from advisor.audit.api import audit

    def run(model: Any, inputs: list[Any], notes: list[str], target: Target) -> Any:
        return audit(
            model,
            tuple(inputs),
            allow=allow,
            target=spec,
            notes=notes,
            fallback_location=target.location,
            include_third_party=include_third_party,
        )

    return run_target(spec, run, shapes=shapes, dtypes=dtypes, kwargs=kwargs, device=device, progress=progress)


def run_target(
    spec: str,
    run: Callable[[Any, list[Any], list[str], Target], Any],
    *,
    shapes: Sequence[tuple[int, ...]],
    dtypes: Sequence[str] = ("float",),
    kwargs: dict[str, Any] | None = None,
    device: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> Any:
    """Resolve and build a target where it can run, then ``run(model, inputs, notes, target)``.

    The device policy of ``audit`` and ``recommend TARGET``: ``meta`` builds without weight memory,
    ``cpu`` builds real tensors, ``auto`` builds on meta and runs small models on the CPU (real values),
    large ones on meta, with a CPU fallback and a note when meta fails. Raises UsageError (exit 2) for
    bad arguments and for an example input too large to allocate, ModelLoadError for a target that
    cannot be imported, built or run.
    """
    if device not in DEVICES:
        raise UsageError(f"unknown device '{device}'", hint="choose auto, meta or cpu")
    if not shapes:
        raise UsageError(
            "a model target needs an example input shape",
            hint="pass --input-shape, batch first, e.g. --input-shape 8,3,32,32 (add --input-dtype long for token ids)",
        )
    if len(dtypes) not in (1, len(shapes)):
        raise UsageError(
            f"{len(dtypes)} --input-dtype values for {len(shapes)} --input-shape values",
            hint="give one --input-dtype for all inputs, or one per --input-shape",
        )
    check_input_size(shapes, dtypes)
    kwargs = kwargs or {}
    say = progress or (lambda _msg: None)
    # print() in the user's module, constructor or forward is chatter: keep stdout for the report
    with contextlib.redirect_stdout(sys.stderr):
        return _run_target(spec, shapes, dtypes, kwargs, device, say, run)


def _run_target(
    spec: str,
    shapes: Sequence[tuple[int, ...]],
    dtypes: Sequence[str],
    kwargs: dict[str, Any],
    device: str,
    say: Callable[[str], None],
    on_model: Callable[[Any, list[Any], list[str], Target], Any],
) -> Any:
    from advisor.audit.api import ModelRunError

    target = resolve(spec)
    notes: list[str] = []

    def run(model: Any, dev: str) -> Any:
        return on_model(model, make_inputs(shapes, dtypes, model, dev), notes, target)

    if device == "cpu":
        return run(build(target, kwargs, "cpu"), "cpu")

    say(f"building {target.display} on the meta device")
    try:
        model = build(target, kwargs, "meta")
    except ModelLoadError as exc:
        if device == "meta":
            raise
        notes.append(f"the model could not be built on the meta device ({exc.message.splitlines()[0]}); ran on CPU")
        return run(build(target, kwargs, "cpu"), "cpu")
    placement = _placement(model)
    if placement == "mixed":
        # the legacy torch.Tensor(n) constructor ignores `with torch.device('meta')` (wav2vec2, SEW-D, XLNet)
        if device == "meta":
            notes.append(
                "some parameters or buffers were created outside the meta device (the legacy torch.Tensor(n) "
                "constructor); they were moved to meta"
            )
            return run(model.to("meta"), "meta")
        notes.append(
            "the model is only partly built on the meta device (some tensors are made with the legacy "
            "torch.Tensor(n) constructor, which ignores it); ran on CPU"
        )
        del model
        return run(build(target, kwargs, "cpu"), "cpu")
    if placement == "real":
        # a prebuilt instance, or a factory that places its own tensors: audit it where it lives
        return run(model, "cpu")
    to_cpu = device == "auto" and weight_bytes(model) < AUTO_CPU_BYTES
    if to_cpu and input_bytes(shapes, dtypes) > 2**20:
        estimate = estimate_activation_bytes(model, shapes, dtypes)
        if estimate is not None and estimate > MAX_ACTIVATION_BYTES:
            shown = " ".join(",".join(map(str, s)) for s in shapes)
            raise UsageError(
                f"--input-shape {shown} makes about {_gib(estimate)} of activations in one forward pass "
                f"(measured on the meta device; the audit allows {_gib(MAX_ACTIVATION_BYTES)})",
                hint="dropout placement does not depend on the size: use a smaller batch or input, "
                "or audit on the meta device (--device meta), which allocates nothing",
            )
    if to_cpu:
        # small enough to hold: real values let the audit compare two eval outputs
        del model
        return run(build(target, kwargs, "cpu"), "cpu")
    try:
        return run(model, "meta")
    except ModelRunError as exc:
        if device == "meta":
            raise ModelRunError(
                exc.message, (exc.hint or "") + "; or try --device cpu", layer=exc.layer, original=exc.original
            ) from None
        notes.append(f"the model could not run on the meta device ({exc.message.splitlines()[0]}); ran on CPU")
        say("meta device failed; building on CPU")
        return run(build(target, kwargs, "cpu"), "cpu")


def _placement(model: Any) -> str:
    """'meta' (every parameter and buffer on meta), 'mixed', 'real' (none on meta) or 'empty'."""
    import itertools

    metas = {bool(t.is_meta) for t in itertools.chain(model.parameters(), model.buffers())}
    if not metas:
        return "empty"
    if metas == {True}:
        return "meta"
    return "mixed" if True in metas else "real"
