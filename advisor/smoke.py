"""Run the smoke test of a generated model file: import it from its path, pick a device, report.

The file's own ``smoke_test()`` does the work (a few training steps on one synthetic batch, with its
checks); this module finds the device, imports the file without running its ``__main__`` block,
turns an import failure into a :class:`~advisor.errors.ModelLoadError` that names the user's line,
and returns the measurements as a :class:`SmokeResult`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict

from advisor.errors import DeviceError, ModelLoadError

DEVICES = ("auto", "cpu", "cuda", "mps", "xpu")
# Measurements that files written before v0.2 do not return.
OPTIONAL_MEASUREMENTS = {"audit"}


SMOKE_SCHEMA_VERSION = 1  # of SmokeResult as `smoke --format json` prints it


class SmokeResult(BaseModel):
    """What one smoke run measured; ``ok`` is False when a check failed or the model raised."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = SMOKE_SCHEMA_VERSION
    file: str
    device: str
    ok: bool
    message: str
    steps: int | None = None
    step_ms: float | None = None
    params: int | None = None
    full_params: int | None = None
    dropout_sites: int | None = None
    start_loss: float | None = None
    end_loss: float | None = None
    audit: str | None = None  # the command that audits the file's model (files written since v0.2)


def _torch() -> Any:
    from advisor.deps import require_torch

    return require_torch("smoke")


def available_devices() -> list[str]:
    """The device kinds usable here, CPU first."""
    torch = _torch()
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        found.append("xpu")
    return found


def resolve_device(name: str) -> str:
    """``auto``: ``torch.accelerator`` first, then CUDA, MPS, XPU, CPU. A named device must be available."""
    kind, _, index = name.partition(":")
    if kind not in DEVICES or (index and (kind == "auto" or not index.isdigit())):
        raise DeviceError(
            f"unknown device '{name}'",
            hint=f"choose one of {', '.join(DEVICES)} (available here: {', '.join(available_devices())})",
        )
    available = available_devices()
    torch = _torch()
    if kind == "auto":
        accelerator = getattr(torch, "accelerator", None)
        if accelerator is not None and accelerator.is_available():
            current = accelerator.current_accelerator()
            if current is not None:
                return str(current.type)
        return next(d for d in ("cuda", "mps", "xpu", "cpu") if d in available)
    if kind not in available:
        raise DeviceError(
            f"device '{name}' is not available here",
            hint=f"available devices: {', '.join(available)} (or --device auto)",
        )
    if index and kind in ("cuda", "xpu"):
        count = getattr(torch, kind).device_count()
        if int(index) >= count:
            raise DeviceError(
                f"device '{name}' does not exist: {count} {kind} device(s) here",
                hint=f"use {kind}:0 to {kind}:{count - 1}",
            )
    return name


def _user_line(exc: BaseException, path: Path) -> str | None:
    """'FILE:LINE: source' for the deepest frame of the traceback inside the user's file."""
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename).resolve() == path:
        text = (exc.text or "").strip()
        return f"{path.name}:{exc.lineno}: {text}" if text else f"{path.name}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == path]
    if not frames:
        return None
    frame = frames[-1]
    return f"{path.name}:{frame.lineno}: {(frame.line or '').strip()}"


def load_model_file(path: Path) -> tuple[ModuleType, str]:
    """Import ``path`` as a module (its ``__main__`` block does not run); return it and its module name."""
    path = Path(path).resolve()
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder", hint="give the path of a file written by 'generate'")
    if not path.exists():
        raise ModelLoadError(f"{path} does not exist", hint="give the path of a file written by 'generate'")
    if not path.is_file():
        raise ModelLoadError(f"{path} is not a regular file", hint="give the path of a file written by 'generate'")
    _torch()  # a missing torch is reported as such, not as the file's import error
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"_dropout_advisor_smoke_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"{path} cannot be imported", hint="give a Python file (.py)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file executes
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except SystemExit as exc:  # sys.exit() at import time would end our process without an error line
        sys.modules.pop(name, None)
        where = _user_line(exc, path)
        raise ModelLoadError(
            f"{path.name} called sys.exit({exc.code!r}) while it was imported" + (f"\n  {where}" if where else ""),
            hint='move that call under `if __name__ == "__main__":` so that importing the file does not exit',
        ) from None
    except Exception as exc:
        sys.modules.pop(name, None)
        where = _user_line(exc, path)
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise ModelLoadError(
            f"{path.name} failed to import: {detail}" + (f"\n  {where}" if where else ""),
            hint="fix that line, or write the file again with 'dropout-advisor generate ... --force'",
        ) from None
    finally:
        try:
            sys.path.remove(str(path.parent))
        except ValueError:
            pass
    if not callable(getattr(module, "smoke_test", None)):
        sys.modules.pop(name, None)
        raise ModelLoadError(
            f"{path.name} has no smoke_test() function",
            hint="the smoke command runs files written by 'dropout-advisor generate'",
        )
    return module, name


def run_smoke(path: Path, device: str = "auto", steps: int | None = None, seed: int = 0) -> SmokeResult:
    """Run the smoke test of a generated file on ``device``; a failed check is a result, not an error.

    ``steps`` caps the training steps; ``None`` keeps the file's own default (``SMOKE_STEPS``).
    """
    resolved = resolve_device(device)
    path = Path(path)
    module, name = load_model_file(path)
    budget = {} if steps is None else {"steps": steps}
    try:
        measured = module.smoke_test(device=resolved, seed=seed, verbose=False, **budget)
    except AssertionError as exc:
        return SmokeResult(file=str(path), device=resolved, ok=False, message=str(exc) or "a check failed")
    except (Exception, SystemExit) as exc:
        where = _user_line(exc, path.resolve())
        message = f"the model raised {type(exc).__name__}: {exc}" + (f" ({where})" if where else "")
        return SmokeResult(file=str(path), device=resolved, ok=False, message=message)
    finally:
        sys.modules.pop(name, None)
    if not isinstance(measured, dict):
        return SmokeResult(
            file=str(path), device=resolved, ok=False, message="smoke_test() did not return its measurements"
        )
    fields = set(SmokeResult.model_fields) - {"schema_version", "file", "device", "ok", "message"}
    missing = sorted(fields - OPTIONAL_MEASUREMENTS - set(measured))
    if missing:
        return SmokeResult(
            file=str(path),
            device=resolved,
            ok=False,
            message="smoke_test() did not return its measurements: no " + ", ".join(missing),
        )
    return SmokeResult(
        file=str(path),
        device=str(measured.get("device", resolved)),
        ok=True,
        message="passed",
        **{k: v for k, v in measured.items() if k in fields},
    )
