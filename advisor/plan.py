"""The placement plan: the advisor's answer, consumed by the text view, JSON, the generator and the
experiment runner.

``layers`` is the user's network top to bottom as a list of operations; each site sits between two
of them (``position`` is the index of the operation it precedes).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from advisor.schema import DropoutKind, Operation

PLAN_SCHEMA_VERSION = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Op(_Frozen):
    """One operation of the user's layer stack."""

    kind: Operation
    label: str
    tags: tuple[str, ...] = ()
    block: int | None = Field(default=None, description="0-based index of the repeated block it belongs to")


class PlanSite(_Frozen):
    id: str
    position: int = Field(description="index in 'layers' of the operation this site precedes")
    after: Operation
    before: Operation
    after_label: str
    before_label: str
    block: int | None = None
    kind: DropoutKind
    module: str
    p: float = Field(ge=0.0, lt=1.0)
    p_range: tuple[float, float]
    schedule: str = Field(
        default="constant",
        description="constant; early (on for the first part of training, then off: DRP202); late (off, then on); "
        "rise-with-depth (one cited rate per block); linear-depth (drop-path rising linearly with depth to the "
        "last block's rate, by the rule in depth_rule)",
    )
    depth_rule: str | None = Field(
        default=None,
        description="linear-depth sites: how each block's rate follows from the last block's: 'linear-depth' "
        "(Huang et al.: l/L * p), 'linspace' (torch.linspace(0, p, L): timm/DeiT, Swin, ConvNeXt) or "
        "'block-index' (EfficientNet: p * i / L, 0-based i); see advisor.advise.depth",
    )
    reason: str
    recommendations: list[str]
    citations: list[str]
    where: str = Field(default="", description="The place in words, shared by the sites of one group.")
    recipe: str | None = Field(default=None, description="The --base recipe this site reproduces.")
    role: str | None = Field(default=None, description="The recipe site's role (advisor.schema.SiteRole).")
    # Plain [] defaults (pydantic copies them): a default_factory=list costs ~8 ms each at first use,
    # inspecting the builtin's signature, on every command that builds a plan.
    fields: list[str] = Field(default=[], description="Config fields that set this rate (library:name).")
    evidence: list[str] = Field(default=[], description="Where the recipe's fact was read.")

    @property
    def reason_shared(self) -> str:
        """The reason without its per-site rate sentence (``Rate: ...``), shared by a group's sites."""
        return self.reason.split(" Rate: ", 1)[0]

    @property
    def rate_reason(self) -> str:
        """The per-site rate sentence, or an empty string."""
        parts = self.reason.split(" Rate: ", 1)
        return parts[1].rstrip(".") if len(parts) == 2 else ""


class AvoidEntry(_Frozen):
    after: Operation
    before: Operation
    where: str
    reason: str
    recommendations: list[str]
    citations: list[str]


class Note(_Frozen):
    text: str
    recommendations: list[str]
    citations: list[str]
    contested: bool = False


class Plan(_Frozen):
    schema_version: int = PLAN_SCHEMA_VERSION
    spec: dict[str, object]
    layers: list[Op]
    sites: list[PlanSite]
    avoid: list[AvoidEntry]
    notes: list[Note]

    def sites_at(self, position: int) -> list[PlanSite]:
        return [s for s in self.sites if s.position == position]

    def site_groups(self) -> list[list[PlanSite]]:
        """Sites that share their place, kind, module, reason and sources, in order: one entry each in views.

        A long plan (a 24-layer Transformer) repeats the same site per block; views show each group
        once, with the layers it covers and its rates.
        """
        groups: dict[tuple[object, ...], list[PlanSite]] = {}
        for site in self.sites:
            key = (
                site.where or (site.after, site.before),
                site.kind,
                site.module,
                site.schedule,
                site.reason_shared,
                tuple(site.recommendations),
                tuple(site.citations),
                site.recipe,
                tuple(site.fields),
            )
            groups.setdefault(key, []).append(site)
        return list(groups.values())
