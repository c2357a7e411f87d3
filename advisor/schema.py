"""Strict schemas of the knowledge base.

Every model forbids unknown keys and is frozen: a typo in a data file is an error, never lost data.
Rates are always *drop* probabilities (PyTorch ``p``); sources that state a retain probability are
converted by the author of the entry, who records the original wording in ``rate_text``.
"""

# No ``from __future__ import annotations`` here: pydantic would then evaluate every field's annotation from
# a string at import (about 1.7 ms of every knowledge command's start-up); validators return ``Self``.
import re
from typing import Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = 1

CITATION_KEY = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
RECOMMENDATION_ID = re.compile(r"^DRP\d{3}$")
SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

Evidence = Literal["primary", "quoted", "secondary", "unverified"]
Confidence = Literal["high", "medium", "low"]
EntryType = Literal["article", "inproceedings", "incollection", "book", "misc", "manual", "online"]

# Kinds of dropout, one vocabulary for findings, recommendations, plans and audit reports.
DropoutKind = Literal[
    "dropout",  # element-wise (nn.Dropout)
    "dropout1d",  # channel-wise on (N, C, L)
    "dropout2d",  # channel-wise on (N, C, H, W): SpatialDropout
    "dropout3d",
    "alpha-dropout",  # SELU nets
    "feature-alpha-dropout",
    "locked-dropout",  # variational: one mask for all time steps
    "drop-path",  # stochastic depth: drop a whole residual branch per sample
    "dropblock",
    "weight-drop",  # DropConnect on weights
    "attention-dropout",  # on the attention probabilities
    "embedding-dropout",  # whole rows of the embedding matrix (word dropout)
    "none",  # a finding or recommendation that says: no dropout here
]

# The operations that stand around a dropout site, one documented vocabulary (see README).
Operation = Literal[
    "input",
    "embedding",
    "positional-encoding",
    "linear",
    "conv",
    "activation",
    "pool",
    "global-pool",
    "flatten",
    "batchnorm",
    "layernorm",
    "attention",
    "attention-weights",
    "ffn",
    "residual-branch",
    "residual-add",
    "identity-path",
    "rnn-layer",
    "recurrent-connection",
    "graph-conv",
    "classifier",
    "output",
    "loss",
    "any",
]

Category = Literal["placement", "rate", "interaction", "implementation", "process"]


class Strict(BaseModel):
    # defer_build: the validators are built on first use, so commands served from the cache
    # (see advisor.knowledge) never pay for building them.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, defer_build=True)


def _check_range(lo: float, hi: float) -> None:
    if not (0.0 <= lo <= hi < 1.0):
        raise ValueError(f"rate range [{lo}, {hi}] must satisfy 0 <= low <= high < 1")


class Finding(Strict):
    """One placement fact taken from a source."""

    where: str = Field(min_length=3, description="Where the dropout goes, in the source's terms.")
    kind: DropoutKind
    p: float | None = Field(default=None, ge=0.0, lt=1.0, description="Drop probability.")
    p_range: tuple[float, float] | None = None
    rate_text: str | None = Field(
        default=None, description="The rate as the source states it, e.g. 'retain p = 0.8 (drop 0.2)'."
    )
    converted_from_retain: bool = False
    section: str | None = Field(default=None, description="Section, table, figure or file it comes from.")
    quote: str | None = None
    evidence: Evidence
    note: str | None = None

    @model_validator(mode="after")
    def _range_ok(self) -> Self:
        if self.p_range is not None:
            _check_range(*self.p_range)
        if self.converted_from_retain and not self.rate_text:
            raise ValueError("converted_from_retain needs rate_text with the source's original wording")
        return self


class Citation(Strict):
    """A source: paper, book, docs page, code repository or discussion thread."""

    key: str
    entry_type: EntryType
    authors: list[str] = Field(min_length=1)
    title: str = Field(min_length=3)
    year: int = Field(ge=1950, le=2030)
    venue: str | None = None
    journal: str | None = None
    booktitle: str | None = None
    volume: str | None = None
    number: str | None = None
    pages: str | None = None
    publisher: str | None = None
    arxiv: str | None = None
    doi: str | None = None
    url: str | None = None
    isbn: str | None = None
    evidence: Evidence = Field(description="How the bibliographic data was verified.")
    unverified: list[str] = Field(
        default_factory=list, description="Bibliographic fields or claims that could not be verified."
    )
    note: str | None = None
    findings: list[Finding] = Field(default_factory=list)

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        if not CITATION_KEY.match(v):
            raise ValueError("key must be lowercase letters, digits and dashes, e.g. 'srivastava2014'")
        return v

    @field_validator("arxiv")
    @classmethod
    def _arxiv(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^\d{4}\.\d{4,5}$", v):
            raise ValueError("arxiv must be a new-style id such as '1207.0580' (no 'arXiv:' prefix)")
        return v

    @field_validator("doi")
    @classmethod
    def _doi(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^10\.\d{4,9}/\S+$", v):
            raise ValueError("doi must look like '10.1109/CVPR.2019.00279' (no URL prefix)")
        return v

    @model_validator(mode="after")
    def _locator(self) -> Self:
        if not (self.arxiv or self.doi or self.url):
            raise ValueError("a citation needs at least one of arxiv, doi or url")
        if self.entry_type == "article" and not self.journal:
            raise ValueError("an article needs 'journal'")
        if self.entry_type in ("inproceedings", "incollection") and not self.booktitle:
            raise ValueError(f"an {self.entry_type} needs 'booktitle'")
        if self.entry_type == "book" and not self.publisher:
            raise ValueError("a book needs 'publisher'")
        return self


class Site(Strict):
    """Where a recommendation puts (or forbids) dropout, and with which PyTorch tool."""

    after: Operation
    before: Operation
    kind: DropoutKind
    module: str = Field(description="The PyTorch class or argument, e.g. 'nn.Dropout2d' or 'nn.LSTM(dropout=)'.")
    description: str = Field(min_length=3)


class Rate(Strict):
    """A drop probability: a default and the range the citations support."""

    default: float = Field(ge=0.0, lt=1.0)
    low: float = Field(ge=0.0, lt=1.0)
    high: float = Field(ge=0.0, lt=1.0)
    citations: list[str] = Field(min_length=1, description="Sources of the numbers.")
    note: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        _check_range(self.low, self.high)
        if not (self.low <= self.default <= self.high):
            raise ValueError(f"default {self.default} lies outside [{self.low}, {self.high}]")
        return self


class Position(Strict):
    """One side of a contested question."""

    claim: str
    evidence: str
    citations: list[str] = Field(min_length=1)


class Example(Strict):
    """A before/after pair of PyTorch code; both must compile."""

    before: str
    after: str


class AuditRule(Strict):
    """The auditor's rule that enforces this recommendation."""

    slug: str
    severity: Literal["error", "warning", "info"]

    @field_validator("slug")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SLUG.match(v):
            raise ValueError("slug must be lowercase words joined by dashes")
        return v


# ---- engine: when a recommendation applies to a user's architecture, and what it does ----

Arch = Literal["mlp", "cnn", "resnet", "rnn", "transformer", "gnn"]


class Condition(Strict):
    """Conditions on the architecture spec; every field given must hold (AND). Lists mean 'one of'."""

    arch: list[Arch] | None = None
    batch_norm: bool | None = None
    activation: list[str] | None = None
    activation_not: list[str] | None = None
    head: list[Literal["fc", "gap"]] | None = None
    pooling: list[Literal["max", "avg", "none"]] | None = None
    wide: bool | None = None
    cell: list[Literal["lstm", "gru"]] | None = None
    rnn_task: list[Literal["lm", "classifier", "seq2seq"]] | None = None
    min_layers: int | None = Field(default=None, ge=1)
    max_layers: int | None = Field(default=None, ge=1)
    transformer: list[Literal["encoder", "decoder", "encoder-decoder"]] | None = None
    norm: list[Literal["pre", "post"]] | None = None
    gnn: list[Literal["gcn", "gat"]] | None = None
    regime: list[Literal["scratch", "fine-tuning", "pretraining"]] | None = None
    overfitting: list[Literal["none", "mild", "strong", "unknown"]] | None = None
    underfitting: bool | None = None
    uncertainty: bool | None = None
    modality: list[Literal["tabular", "image", "text", "audio", "graph", "sequence", "other"]] | None = None
    modality_not: list[Literal["tabular", "image", "text", "audio", "graph", "sequence", "other"]] | None = None
    embeddings: bool | None = None
    min_params: int | None = Field(default=None, ge=0)
    min_samples: int | None = Field(default=None, ge=0)
    max_samples: int | None = Field(default=None, ge=0, description="Holds when samples are unknown or fewer.")
    min_width: int | None = Field(default=None, ge=1)
    max_width: int | None = Field(default=None, ge=1)
    min_samples_per_param: float | None = Field(
        default=None, gt=0, description="Holds when both counts are known and samples / params reaches it."
    )
    size_known: bool | None = Field(default=None, description="Both --samples and --params were given.")
    positions: list[Literal["additive", "rotary", "relative"]] | None = None
    base: bool | None = Field(default=None, description="A reference recipe (--base) was given.")


class Match(Strict):
    """A gap between two operations in the user's layer stack; tags narrow it (e.g. 'head', 'conv').

    ``module`` and ``p`` override the recommendation's module and default rate at this gap only (e.g.
    ``nn.LSTM(dropout=)`` between stacked layers; AWD-LSTM's different input and output rates).
    A match on a structural path (recurrent-connection, identity-path) never appears as a gap in the
    stack; avoid entries for it are listed whenever the recommendation applies.
    """

    after: Operation
    before: Operation
    after_tag: str | None = None
    before_tag: str | None = None
    kind: DropoutKind | None = None
    module: str | None = Field(default=None, description="May use {cell} (LSTM or GRU).")
    p: float | None = Field(default=None, ge=0.0, lt=1.0)
    label: str | None = Field(
        default=None,
        description="How plans describe this place: a structural path in an avoid entry, or a site's 'where' "
        "when the entry's site description does not fit it.",
    )
    then: Operation | None = Field(
        default=None, description="The operation after 'before' (e.g. a Linear followed by BatchNorm)."
    )
    then_tag: str | None = None
    depth_rule: Literal["linear-depth", "linspace", "block-index"] | None = Field(
        default=None,
        description="For a drop-path site rising with depth: how each block's rate follows from the last block's "
        "(see advisor.advise.depth). None: Huang et al.'s linear-depth rule.",
    )


#: Condition fields that compare the spec with a number: each value an entry uses is a threshold that
#: the entry must document with its source (``engine.thresholds``), so no plan hides an uncited number.
ThresholdField = Literal[
    "min_layers",
    "max_layers",
    "min_params",
    "min_samples",
    "max_samples",
    "min_width",
    "max_width",
    "min_samples_per_param",
]
THRESHOLD_FIELDS: tuple[str, ...] = get_args(ThresholdField)


class Threshold(Strict):
    """Why an engine condition compares the spec with this number, and the sources the number comes from."""

    field: ThresholdField
    value: float
    because: str = Field(min_length=20, description="Where the number comes from, in the sources' terms.")
    citations: list[str] = Field(min_length=1)


class RateRule(Strict):
    """A written rule that picks the cited value a site starts from: the low end, the default or the high end.

    Rules are read in order; the first whose condition holds wins. ``because`` is shown in the plan.
    """

    when: Condition
    to: Literal["low", "default", "high"]
    because: str = Field(min_length=10)


class Engine(Strict):
    """How the advisor uses a recommendation.

    action:
      - ``place``: put a dropout site in every gap that matches ``at`` (first, last or all of them).
      - ``avoid``: list the matching gaps (or structural paths) in the plan's ``avoid`` section, and remove
        any site another recommendation placed there.
      - ``note``: add the summary to the plan's notes (process advice, MC dropout, schedules).
      - ``disable``: remove every placed site (e.g. large-scale pretraining) and say why.
    """

    action: Literal["place", "avoid", "note", "disable"]
    when: list[Condition] = Field(default_factory=lambda: [Condition()], description="Any of these (OR).")
    at: list[Match] = Field(default_factory=list)
    avoid_at: list[Match] = Field(
        default_factory=list,
        description="Places a 'place' recommendation also warns against (the avoid list).",
    )
    scope: Literal["all", "first", "last", "all-but-last"] = "all"
    schedule: Literal["constant", "rise-with-depth", "early", "late"] = "constant"
    priority: int = Field(default=0, description="Where two recommendations claim one gap, the higher wins.")
    supersedes: list[str] = Field(default_factory=list)
    text: str | None = Field(
        default=None,
        min_length=10,
        max_length=240,
        description="What plans say for this entry (a site's reason or a note) when the summary's wording "
        "does not hold for every plan the entry applies to; it must stay true in all of them.",
    )
    rate_rules: list[RateRule] = Field(default_factory=list)
    needs_sites_of: list[str] = Field(
        default_factory=list,
        description="A note shown only when the plan has sites placed by these entries ('*': any site).",
    )
    denies: list[Match] = Field(
        default_factory=list,
        description="Gaps this entry's plan text says take no dropout: the engine never shows the text next to a "
        "site there, and the tests check it.",
    )
    base_plans: bool = Field(
        default=False,
        description="A note also shown in --base plans, which otherwise keep only process and implementation notes.",
    )
    thresholds: list[Threshold] = Field(
        default_factory=list,
        description="Every number a condition of 'when' or of a rate rule compares the spec with, with its source.",
    )

    @model_validator(mode="after")
    def _needs_match(self) -> Self:
        if self.action in ("place", "avoid") and not self.at:
            raise ValueError(f"action '{self.action}' needs at least one 'at' match")
        documented = {(t.field, float(t.value)) for t in self.thresholds}
        for cond in [*self.when, *(r.when for r in self.rate_rules)]:
            for name in THRESHOLD_FIELDS:
                value = getattr(cond, name)
                if value is not None and (name, float(value)) not in documented:
                    raise ValueError(
                        f"condition {name} = {value} is a threshold without a source: add an engine.thresholds "
                        "entry (field, value, because, citations)"
                    )
        return self


class Recommendation(Strict):
    """A placement recommendation with a permanent ID."""

    id: str
    status: Literal["active", "removed"] = "active"
    title: str = Field(min_length=3, description="Human-readable name; may change, the ID never does.")
    summary: str = Field(min_length=10, max_length=200, description="One line.")
    category: Category
    rationale: str = Field(min_length=20)
    applies_to: list[str] = Field(min_length=1)
    not_applies_to: list[str] = Field(min_length=1)
    site: Site
    rate: Rate | None = None
    example: Example
    citations: list[str] = Field(min_length=1)
    confidence: Confidence
    contested: bool = False
    positions: list[Position] = Field(default_factory=list)
    related: list[str] = Field(default_factory=list)
    core: bool = Field(default=False, description="A family's leading rule, shown when a question names no specifics.")
    audit: AuditRule | None = None
    engine: Engine | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not RECOMMENDATION_ID.match(v):
            raise ValueError("id must be 'DRP' followed by three digits, e.g. 'DRP012'")
        return v

    @model_validator(mode="after")
    def _contested(self) -> Self:
        if self.contested and len(self.positions) < 2:
            raise ValueError("a contested recommendation needs at least two 'positions'")
        if "\n" in self.summary:
            raise ValueError("summary must be one line")
        return self


# ---- reference recipes: what a published model configuration actually does ----

#: Where a recipe puts dropout, in roles the engine maps onto gaps of its layer stack
#: (see advisor.stack). A role a recipe does not list is a site the model does not have.
SiteRole = Literal[
    "input",  # on the network input (MLP/CNN inputs, Hinton et al. 2012)
    "embedding",  # on the (summed, possibly normalized) token/patch/position embeddings
    "embedding-dropout",  # whole rows of the embedding matrix (word dropout, AWD-LSTM dropoute)
    "attention-weights",  # on the attention probabilities after softmax (self- and cross-attention)
    "attention-output",  # residual dropout on the attention sub-layer output, before the add
    "ffn-inner",  # between the FFN activation and its second linear layer
    "ffn-output",  # residual dropout on the FFN sub-layer output, before the add
    "drop-path",  # stochastic depth on residual branches
    "final",  # on the output of the last block / stack, before the head or LM head
    "head",  # before the last classifier layer (pooled output, GAP features, last FC input)
    "fc",  # before each hidden FC layer of a classifier head (torchvision AlexNet: before fc6 and fc7)
    "conv",  # inside a plain conv stack (after activation or pooling)
    "block-mid",  # inside a residual block, between its convolutions (WRN)
    "rnn-input",  # on the input of the first recurrent layer
    "rnn-between",  # between stacked recurrent layers (nn.LSTM(dropout=))
    "rnn-output",  # on the last recurrent layer's output, before the decoder/softmax
    "weight-drop",  # DropConnect on the hidden-to-hidden weights
    "hidden",  # after each hidden layer of an MLP
    "graph-input",  # on the input features of each graph-conv layer
    "graph-attention",  # on the GAT attention coefficients
    "graph-features",  # on the GAT transformed features before aggregation
]

#: How a recipe fact was read
RecipeEvidence = Literal[
    "paper-table",  # a table of the paper
    "paper-text",  # the paper's text (section named in `locator`)
    "official-config",  # the authors' configuration file, read at a commit
    "reference-code",  # the authors' or the library's model code, read at a commit
    "model-card",  # the released model card
    "library-default",  # a library's config class default (transformers, timm, torchvision)
]

Library = Literal["transformers", "timm", "torchvision", "original"]


class RecipeSource(Strict):
    """Where one recipe fact comes from: a citation key plus the exact place read."""

    citation: str = Field(description="A key of knowledge/citations.")
    evidence: RecipeEvidence
    locator: str = Field(min_length=3, description="Table, section, file path or config name.")
    commit: str | None = Field(default=None, description="40-hex commit of the repository file read.")
    quote: str | None = None

    @field_validator("commit")
    @classmethod
    def _commit(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[0-9a-f]{7,40}$", v):
            raise ValueError("commit must be a git hash (7 to 40 lowercase hex digits)")
        return v


class RecipeSite(Strict):
    """One dropout site of a published configuration."""

    role: SiteRole
    kind: DropoutKind
    p: float = Field(ge=0.0, lt=1.0, description="Drop probability; for drop-path the deepest block's rate.")
    schedule: Literal["constant", "linear-depth", "linspace", "block-index"] = Field(
        default="constant",
        description="How a drop-path rate rises with depth to p (see advisor.advise.depth): linear-depth is "
        "Huang et al.'s l/L * p; linspace is torch.linspace(0, p, L) (timm/DeiT, Swin, ConvNeXt); block-index "
        "is p * i / L with the 0-based index i (EfficientNet).",
    )
    blocks: list[int] | None = Field(
        default=None,
        description="0-based indices of the blocks that have this site, when only some do (EfficientNet's drop "
        "connect: only the blocks with an identity skip); None: every block.",
    )
    regime: list[Literal["scratch", "fine-tuning", "pretraining"]] | None = Field(
        default=None, description="Only in these regimes (None: in every regime the recipe covers)."
    )
    scope: Literal["all", "first", "last", "all-but-first", "all-but-last"] = Field(
        default="all",
        description="Which of the role's gaps, in network order, have the site (e.g. VGG's 'fc' dropout sits "
        "before fc7 but not before fc6: all-but-first).",
    )
    where: str = Field(min_length=3, description="The site in the source's own words.")
    fields: list[str] = Field(
        default_factory=list,
        description="Config fields or arguments that hold the rate, as 'library:name' "
        "(e.g. 'transformers:hidden_dropout_prob', 'timm:drop_path_rate', 'original:dropout_rate').",
    )
    sources: list[RecipeSource] = Field(min_length=1)
    note: str | None = None

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: list[str]) -> list[str]:
        for f in v:
            lib, _, name = f.partition(":")
            if lib not in ("transformers", "timm", "torchvision", "original") or not name:
                raise ValueError(
                    f"field '{f}' must be 'library:name' with library transformers/timm/torchvision/original"
                )
        return v


class RecipeIdentifier(Strict):
    """A name under which a library or hub knows this configuration."""

    library: Library
    name: str = Field(min_length=1, description="e.g. 'bert-base-uncased', 'vit_base_patch16_224', 'vgg16'.")
    model_type: str | None = Field(default=None, description="transformers config.model_type, e.g. 'bert'.")


class Disagreement(Strict):
    """Sources that disagree about one fact of the recipe, and which side the recipe follows."""

    about: str
    positions: list[str] = Field(min_length=2)
    follows: str
    confidence: Confidence
    citations: list[str] = Field(min_length=1)


class Recipe(Strict):
    """A published model configuration: every dropout site it has, its rate, and where that was read."""

    key: str = Field(description="File name; lowercase, e.g. 'bert-base'.")
    name: str = Field(min_length=2, description="Display name, e.g. 'BERT-base'.")
    aliases: list[str] = Field(default_factory=list, description="Other names users type (--base).")
    summary: str = Field(min_length=10, max_length=240)
    regime: list[Literal["scratch", "fine-tuning", "pretraining"]] = Field(
        min_length=1, description="What the published configuration was used for."
    )
    spec: dict[str, str | int | bool] = Field(
        description="The architecture spec (recommend flags) of this configuration, e.g. arch, layers, width."
    )
    identifiers: list[RecipeIdentifier] = Field(default_factory=list)
    sites: list[RecipeSite] = Field(default_factory=list, description="Empty: the model has no dropout.")
    no_dropout_sources: list[RecipeSource] = Field(
        default_factory=list, description="For a recipe without sites: where 'no dropout' was read."
    )
    citations: list[str] = Field(min_length=1)
    confidence: Confidence
    disagreements: list[Disagreement] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        if not re.match(r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$", v):
            raise ValueError("key must be lowercase letters, digits, dots and dashes, e.g. 'bert-base'")
        return v

    @model_validator(mode="after")
    def _has_evidence(self) -> Self:
        if not self.sites and not self.no_dropout_sources:
            raise ValueError("a recipe without sites needs no_dropout_sources saying where 'no dropout' was read")
        layers = self.spec.get("layers")
        for site in self.sites:
            if site.blocks is not None and isinstance(layers, int) and any(not 0 <= b < layers for b in site.blocks):
                raise ValueError(f"{site.role}: blocks must be 0-based indices below the spec's {layers} layers")
        return self
