"""rate-never-used (DRP312): a module stores a dropout rate above 0, yet no dropout with it runs.

Some modules keep the rate as a number (``self.attention_dropout = config.attention_dropout``,
``self.drop_rate = drop_rate``) and hand it to ``F.dropout`` or SDPA's ``dropout_p`` in forward; when the
forward forgets it, the setting silently does nothing (a configured rate that reproduces none of the
paper's regularization). A rate counts as used when a dropout with that probability runs in the train-mode
forward inside the module (its children included) or in its parent; a drop-path rate (``drop_path_rate``)
also counts as used when a drop-path of at most that rate, or a hand-written mask, runs inside it (linear depth
schedules), and any rate counts as used when the module draws its own masks (``torch.rand``/``bernoulli_``). Dropout
modules that never run are ``dropout-never-called``.

Must flag::

    self.attn_dropout = attn_dropout                      # 0.1
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)    # dropout_p forgotten

Must not flag::

    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_dropout if self.training else 0.0)
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from advisor.audit import trace as tr

if TYPE_CHECKING:
    from advisor.audit.analysis import Analysis, SiteAcc

SLUG = "rate-never-used"
ID = "DRP312"
SEVERITY = "warning"
TITLE = "A configured dropout rate that nothing uses"

_RATE_NAME = re.compile(r"drop|stochastic_depth", re.I)
_SCHEDULE_NAME = re.compile(r"drop_?path|stochastic_depth|layer_?drop", re.I)
_EPS = 1e-9


def _inside(site_path: str, path: str) -> bool:
    return path == "" or site_path == path or site_path.startswith(path + ".")


def _used(ctx: Analysis, path: str, name: str, value: float, ran: list[SiteAcc]) -> bool:
    parent = path.rpartition(".")[0] if path else None
    for s in ran:
        inside = _inside(s.module, path) or (s.rate_from is not None and _inside(s.rate_from, path))
        if s.source == "random" and (s.module == path or (inside and _SCHEDULE_NAME.search(name))):
            return True  # hand-written masks: their rate cannot be read, the module does draw them
        if s.p is None:
            continue
        if (inside or s.module == parent) and abs(s.p - value) < _EPS:
            return True
        if inside and _SCHEDULE_NAME.search(name) and s.kind == "drop-path" and 0 < s.p <= value + _EPS:
            return True
    return False


def check(ctx: Analysis) -> None:
    ran = [s for s in ctx.sites if s.train_calls > 0]
    for path, m in ctx.modules.items():
        if tr.is_torch_class(m) or ctx.site_at(path) is not None or "[" in path:
            continue
        if ctx.train.calls.get(path, 0) == 0 and path != "":
            continue
        for name, value in vars(m).items():
            if name.startswith("_") or "keep" in name.lower() or not _RATE_NAME.search(name):
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
                continue
            if _used(ctx, path, name, float(value), ran):
                continue
            label = f"{path}.{name}" if path else name
            ctx.finding(
                SLUG,
                path,
                f"{type(m).__name__} '{path or '<root>'}' stores the dropout rate {name} = {value:g}, but no "
                f"dropout with p={value:g} ran in its train-mode forward (nor a module it owns): the configured "
                "rate has no effect.",
                f"apply it in forward (F.dropout(x, self.{name}, self.training), or dropout_p=self.{name} if "
                f"self.training else 0.0 for scaled_dot_product_attention), or remove {label} from the config",
                site=None,
            )
