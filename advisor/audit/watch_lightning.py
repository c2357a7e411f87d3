"""A Lightning callback that checks dropout train/eval modes at every batch.

Lightning >= 2.2 keeps each submodule's mode when it switches the LightningModule between training and
evaluation, so a pretrained backbone returned in eval mode by ``from_pretrained()`` stays in eval mode
(dropout silently off) for the whole fit (Lightning issues #19820, #20105, #20646). The callback reports,
once per module path, with :class:`~advisor.audit.watch.DropoutModeWarning`:

* at the start of every training batch, a dropout with p > 0 in eval mode whose enclosing layer has
  trainable parameters (a frozen block, all of whose parameters have ``requires_grad=False``, is left
  alone, as are modules marked with :func:`advisor.frozen` and ``allow`` globs);
* at the start of every validation, test and predict batch, a dropout with p > 0 in training mode;
* with ``runtime=True`` (the default), everything :func:`advisor.watch` sees during the fit, such as an
  EMA or teacher copy run in training mode inside ``training_step``.

This module imports without Lightning installed; Lightning (``lightning`` or ``pytorch_lightning``) is
imported when a callback is created. ``DropoutModeCallback`` is the class, built on first access.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from typing import Any

from advisor.errors import MissingDependencyError

__all__ = ["watch_callback"]  # and DropoutModeCallback, built on first access (module __getattr__)

_CLASSES: dict[Any, type] = {}


class _Checks:
    """The callback's behaviour, mixed into Lightning's ``Callback`` class when Lightning is imported."""

    def __init__(self, *, allow: Iterable[str] = (), runtime: bool = True, warn: bool = True) -> None:
        from advisor.audit.watch import parse_allow

        super().__init__()
        self._allow = parse_allow(allow)
        self._runtime = runtime
        self._warn = warn
        self.watch: Any = None  # the advisor.audit.watch.Watch of the current LightningModule
        self._module: Any = None
        self._entered = False

    @property
    def events(self) -> list[Any]:
        """Every event reported so far (``WatchEvent``), one per module path and kind."""
        return self.watch.events if self.watch is not None else []

    def _watch_for(self, pl_module: Any) -> Any:
        from advisor.audit.watch import Watch

        if self.watch is None or self._module is not pl_module:
            self.watch, self._module = Watch({"": pl_module}, self._allow, self._warn), pl_module
        return self.watch

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        watch = self._watch_for(pl_module)
        if self._runtime and not self._entered:
            watch.__enter__()
            self._entered = True

    def _leave(self) -> None:
        if self._entered:
            self._entered = False
            self.watch.__exit__(None, None, None)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._leave()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._leave()

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        # modules replaced or unfrozen between epochs (fine-tuning schedules) are seen afresh
        self._watch_for(pl_module).rescan()

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._watch_for(pl_module).check("train", context=f"at the start of training batch {batch_idx}")

    def on_validation_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._watch_for(pl_module).check("eval", context=f"at the start of validation batch {batch_idx}")

    def on_test_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._watch_for(pl_module).check("eval", context=f"at the start of test batch {batch_idx}")

    def on_predict_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._watch_for(pl_module).check("eval", context=f"at the start of predict batch {batch_idx}")


def _callback_base(package: str | None) -> Any:
    """Lightning's Callback class: from ``package`` when given, else from whichever Lightning the user
    already imported (``lightning`` first), else from the first one that imports."""
    names = [package] if package else ["lightning", "pytorch_lightning"]
    if not package:
        names.sort(key=lambda n: n not in sys.modules)
    for name in names:
        module_name = "lightning.pytorch" if name == "lightning" else name
        try:
            return importlib.import_module(module_name).Callback
        except ImportError:
            continue
    raise MissingDependencyError(
        "the dropout-mode callback needs PyTorch Lightning, which is not installed",
        hint="pip install lightning (or use advisor.watch(model) in a plain PyTorch loop)",
    )


def _class(base: Any) -> type:
    cls = _CLASSES.get(base)
    if cls is None:
        cls = type("DropoutModeCallback", (_Checks, base), {"__module__": __name__, "__doc__": __doc__})
        _CLASSES[base] = cls
    return cls


def watch_callback(
    *, allow: Iterable[str] = (), runtime: bool = True, warn: bool = True, package: str | None = None
) -> Any:
    """A Lightning callback that checks dropout modes at each batch; pass it to ``Trainer(callbacks=[...])``.

    ``allow``: module globs (optionally ``GLOB:KIND``) never reported, as for :func:`advisor.watch`.
    ``runtime``: also run :func:`advisor.watch` on the LightningModule during ``fit``. ``warn=False``
    only records ``callback.events``. ``package``: ``'lightning'`` or ``'pytorch_lightning'`` when both
    are installed and the default choice (the one already imported, else ``lightning``) is wrong.
    Raises :class:`~advisor.errors.MissingDependencyError` when Lightning is not installed and
    :class:`~advisor.errors.UsageError` for a bad allow entry.
    """
    return _class(_callback_base(package))(allow=allow, runtime=runtime, warn=warn)


def __getattr__(name: str) -> Any:
    if name == "DropoutModeCallback":
        return _class(_callback_base(None))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
