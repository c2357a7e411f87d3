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
    schedule: str = "constant"
    reason: str
    recommendations: list[str]
    citations: list[str]


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
