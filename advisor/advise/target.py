"""``recommend TARGET``: load a model the way ``audit`` does and plan for it.

The target syntax, the import and build errors and the example inputs are the auditor's
(:mod:`advisor.audit.load`). A plan needs no values, only the operations, so ``auto`` traces on the
meta device (no weight memory) and falls back to the CPU when the model cannot be built or run there.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
from collections.abc import Callable, Sequence
from typing import Any

from advisor.errors import ModelLoadError, UsageError


def recommend_target(
    spec: str,
    *,
    shapes: Sequence[tuple[int, ...]],
    dtypes: Sequence[str] = ("float",),
    kwargs: dict[str, Any] | None = None,
    device: str = "auto",
    progress: Callable[[str], None] | None = None,
    **plan_args: Any,
) -> Any:
    """Resolve, build and plan for ``spec`` (``path/to/file.py:NAME`` or ``package.module:NAME``).

    ``plan_args`` go to :func:`advisor.advise.model_plan.recommend_for`. Raises
    :class:`~advisor.errors.UsageError` for bad arguments and :class:`~advisor.errors.ModelLoadError`
    for a target that cannot be imported, built or run (exit 2 in the CLI).
    """
    from advisor.audit import load

    if device not in load.DEVICES:
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
    say = progress or (lambda _msg: None)
    with contextlib.redirect_stdout(sys.stderr):  # print() in the user's code is chatter
        return _plan_target(spec, shapes, dtypes, kwargs or {}, device, say, plan_args)


def _placement(model: Any) -> str:
    metas = {bool(t.is_meta) for t in itertools.chain(model.parameters(), model.buffers())}
    if not metas:
        return "empty"
    if metas == {True}:
        return "meta"
    return "mixed" if True in metas else "real"


def _plan_target(
    spec: str,
    shapes: Sequence[tuple[int, ...]],
    dtypes: Sequence[str],
    kwargs: dict[str, Any],
    device: str,
    say: Callable[[str], None],
    plan_args: dict[str, Any],
) -> Any:
    from advisor.advise.model_plan import recommend_for
    from advisor.audit import load
    from advisor.audit.api import ModelRunError

    target = load.resolve(spec)
    notes: list[str] = []

    def run(model: Any, dev: str) -> Any:
        inputs = load.make_inputs(shapes, dtypes, model, dev)
        return recommend_for(model, tuple(inputs), target=spec, notes=notes, **plan_args)

    if device == "cpu":
        return run(load.build(target, kwargs, "cpu"), "cpu")
    say(f"building {target.display} on the meta device")
    try:
        model = load.build(target, kwargs, "meta")
    except ModelLoadError as exc:
        if device == "meta":
            raise
        notes.append(f"the model could not be built on the meta device ({exc.message.splitlines()[0]}); read on CPU")
        return run(load.build(target, kwargs, "cpu"), "cpu")
    placement = _placement(model)
    if placement in ("real", "empty"):
        return run(model, "cpu")  # a prebuilt instance, or a factory that places its own tensors
    if placement == "mixed":
        if device == "meta":
            return run(model.to("meta"), "meta")
        notes.append(
            "the model is only partly built on the meta device (legacy torch.Tensor(n) parameters); read on CPU"
        )
        del model
        return run(load.build(target, kwargs, "cpu"), "cpu")
    try:
        return run(model, "meta")
    except ModelRunError as exc:
        if device == "meta":
            raise ModelRunError(exc.message, (exc.hint or "") + "; or try --device cpu", layer=exc.layer) from None
        notes.append(f"the model could not run on the meta device ({exc.message.splitlines()[0]}); read on CPU")
        say("meta device failed; building on CPU")
        return run(load.build(target, kwargs, "cpu"), "cpu")
