"""``dropout-advisor tune``: search dropout rates and placements with Optuna, starting from the advisor's plan.

Modules, one idea each: :mod:`.data` (the shipped datasets or the user's ``.npz``/``.csv``, split as
``experiment`` splits), :mod:`.space` (the search space the advisor's plan spans, ``--space`` files, a
trial's parameters turned into a network), :mod:`.storage` (Optuna storage URLs, their errors, the study
and its fingerprint), :mod:`.search` (the objective, the sampler, the worker loop, local worker processes),
:mod:`.results` (pydantic result models), :mod:`.report` (re-runs, paired comparisons, importances, JSON,
CSV, table rows, files), :mod:`.figures` (the PNGs) and :mod:`.setup` (a run from flags or ``--resume`` to
its report: what the CLI calls).

The networks and the training loop are ``experiment``'s (:mod:`advisor.experiment`), so a tuned
configuration and an experiment variant are trained the same way. Importing this package is cheap:
torch, optuna, numpy, scipy and matplotlib are imported inside the functions that need them.
"""

from __future__ import annotations

from advisor.errors import MissingDependencyError

INSTALL_HINT = "pip install 'dropout-advisor[experiment]'"
DISTRIBUTED_HINT = "pip install 'dropout-advisor[distributed]'"

# Defaults; kept here, away from torch and optuna, for the CLI's help.
DEFAULT_TRIALS = 30
DEFAULT_SEEDS = 3  # re-runs of each top configuration, as experiment's default seeds
DEFAULT_TOP = 3
DEFAULT_SEED = 0
DEFAULT_HEARTBEAT = 10  # seconds between a running trial's heartbeats in an RDB storage


def require_extras() -> None:
    """Fail early, with the install command, when the ``experiment`` extra (optuna included) is missing."""
    from advisor.deps import require_torch

    require_torch("tune", hint=INSTALL_HINT)
    missing = []
    for module, package in (
        ("optuna", "optuna"),
        ("sklearn", "scikit-learn"),
        ("scipy", "scipy"),
        ("matplotlib", "matplotlib"),
    ):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise MissingDependencyError(
            f"'tune' needs {', '.join(missing)}, which {verb} not installed", hint=INSTALL_HINT
        )
