"""``dropout-advisor experiment``: train one network with several dropout placements on a real dataset.

Modules, one idea each: :mod:`.datasets` (load, split, standardize), :mod:`.variants` (the placements as
blueprints, built into ``nn.Sequential``), :mod:`.runner` (the seeded training loop), :mod:`.results`
(pydantic result models, ranking, the within-noise rule), :mod:`.report` (table rows, JSON, CSV, files)
and :mod:`.figure` (the PNG).

Importing this package is cheap: torch, numpy, scikit-learn and matplotlib are imported inside the
functions that need them.
"""

from __future__ import annotations

from advisor.errors import MissingDependencyError

INSTALL_HINT = "pip install 'dropout-advisor[experiment]'"

# Defaults, chosen with bench/bench_experiment.py so the default run (every CNN variant x 3 seeds on
# digits) stays well inside its 90 s budget on a 2-core CPU. Kept here, away from torch, for the CLI's help.
DEFAULT_DATASET = "digits"
DEFAULT_SEEDS = 3
DEFAULT_EPOCHS = {"cnn": 15, "mlp": 60}
DEFAULT_BATCH_SIZE = 64
DEFAULT_LR = 5e-3  # Adam

# The names the CLI's help lists, as plain tuples so that building the help costs no dataclasses; a test
# keeps them equal to the registries in datasets.py and variants.py.
DATASET_NAMES = ("digits", "breast-cancer", "wine")
VARIANT_NAMES = {
    "cnn": (
        "none",
        "fc-only",
        "conv-relu-drop",
        "after-pool",
        "dropout2d",
        "drop-before-bn",
        "bn-only",
        "bn-then-drop",
        "advisor",
    ),
    "mlp": ("none", "input-hidden", "hidden-only", "advisor"),
}


def require_extras() -> None:
    """Fail early, with the install command, when the optional ``experiment`` extra is missing."""
    from advisor.deps import require_torch

    require_torch("experiment", hint=INSTALL_HINT)
    missing = []
    try:
        import sklearn  # noqa: F401
    except ImportError:
        missing.append("scikit-learn")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        missing.append("matplotlib")
    if missing:
        raise MissingDependencyError(
            f"'experiment' needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed",
            hint=INSTALL_HINT,
        )
