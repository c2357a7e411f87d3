"""``recommend TARGET``: load a model the way ``audit`` does and plan for it.

The target syntax, the import and build errors, the example inputs and the device policy are the
auditor's (:func:`advisor.audit.load.run_target`): ``auto`` builds on the meta device, runs small
models on the CPU and large ones on meta, and falls back to the CPU with a note when meta fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


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
    from advisor.advise.model_plan import recommend_for
    from advisor.audit import load

    def run(model: Any, inputs: list[Any], notes: list[str], target: Any) -> Any:
        return recommend_for(model, tuple(inputs), target=spec, notes=notes, **plan_args)

    return load.run_target(spec, run, shapes=shapes, dtypes=dtypes, kwargs=kwargs, device=device, progress=progress)
