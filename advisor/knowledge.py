"""Load, validate and index the knowledge base.

Every problem in every file is collected first and reported in one :class:`KnowledgeError`, so an
author fixing the data sees the whole list at once, each with its file and field.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from advisor.errors import KnowledgeError, NotFoundError
from advisor.schema import Citation, Recipe, Recommendation

try:  # A cache hit needs only the C unpickler: `import pickle` (its pure-Python pickler) costs ~2.5 ms CPU.
    from _pickle import load as _unpickle_file
    from _pickle import loads as _unpickle
except ImportError:  # pragma: no cover - a Python without the C accelerator
    from pickle import load as _unpickle_file
    from pickle import loads as _unpickle

M = TypeVar("M", bound=BaseModel)
V = TypeVar("V")


class _Pickled:
    """One entry of the cache, still as bytes: unpickled on first access."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class LazyMap(MutableMapping[str, V], Generic[V]):
    """A dict whose cached entries are unpickled when first read.

    Unpickling every pydantic object of the knowledge base took most of a cached command's own start-up;
    ``explain DRP001`` needs one recommendation and its sources. Order and mapping behaviour are a dict's.
    """

    def __init__(self, items: dict[str, Any] | None = None) -> None:
        self._items: dict[str, Any] = dict(items or {})

    def __getitem__(self, key: str) -> V:
        value = self._items[key]
        if isinstance(value, _Pickled):
            value = self._items[key] = _unpickle(value.data)
        return value

    def __setitem__(self, key: str, value: V) -> None:
        self._items[key] = value

    def __delitem__(self, key: str) -> None:
        del self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MutableMapping) and dict(self.items()) == dict(other.items())

    def __repr__(self) -> str:
        return f"LazyMap({list(self._items)})"


def data_root() -> Path:
    """The knowledge folder: packaged inside ``advisor/`` in a wheel, at the repository root in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "knowledge", here.parent / "knowledge"):
        if (candidate / "recommendations").is_dir():
            return candidate
    raise KnowledgeError(
        "the knowledge base is missing from this installation",
        hint="reinstall dropout-advisor; a wheel must contain advisor/knowledge/",
    )


@dataclass(frozen=True)
class Problem:
    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}" if self.field else f"{self.file}: {self.message}"


@dataclass
class KnowledgeBase:
    root: Path
    citations: MutableMapping[str, Citation] = field(default_factory=dict)
    recommendations: MutableMapping[str, Recommendation] = field(default_factory=dict)
    recipes: MutableMapping[str, Recipe] = field(default_factory=dict)
    # Derived data kept with the knowledge base (and so in its cache), e.g. search indexes.
    derived: MutableMapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # ---- lookups ----
    def active(self) -> list[Recommendation]:
        return [r for r in self.recommendations.values() if r.status == "active"]

    def citation(self, key: str) -> Citation:
        try:
            return self.citations[key]
        except KeyError:
            raise NotFoundError(
                f"no citation with key '{key}'",
                hint=_suggest(key, self.citations) or "run 'dropout-advisor refs list' to see every key",
            ) from None

    def recommendation(self, ident: str) -> Recommendation:
        """Find a recommendation by ID (any case) or by its audit rule slug."""
        wanted = ident.strip()
        rec = self.recommendations.get(wanted.upper())
        if rec is not None:
            return rec
        for r in self.recommendations.values():
            if r.audit is not None and r.audit.slug == wanted.lower():
                return r
        names = list(self.recommendations) + [r.audit.slug for r in self.recommendations.values() if r.audit]
        raise NotFoundError(
            f"no recommendation with ID or rule '{ident}'",
            hint=_suggest(ident, names, upper=True) or "run 'dropout-advisor list' to see every ID",
        )

    def recipe(self, name: str) -> Recipe:
        """Find a reference recipe by key, alias or library identifier (case and '_'/'-' insensitive)."""
        wanted = _lookup_names(name)
        for r in self.recipes.values():
            if wanted & recipe_names(r):
                return r
        pool = [n for r in self.recipes.values() for n in (r.key, *r.aliases)]
        raise NotFoundError(
            f"no reference recipe named '{name}'",
            hint=_suggest(name, pool) or "run 'dropout-advisor recipes list' to see every recipe",
        )

    def by_slug(self) -> dict[str, Recommendation]:
        return {r.audit.slug: r for r in self.recommendations.values() if r.audit is not None}

    def cited_by(self, key: str) -> list[Recommendation]:
        return [r for r in self.recommendations.values() if key in _all_citations(r)]


def _suggest(word: str, names: Iterable[str], *, upper: bool = False) -> str | None:
    import difflib

    names = list(names)
    probe = word.upper() if upper else word
    pool = {n.upper() if upper else n: n for n in names}
    close = difflib.get_close_matches(probe, list(pool), n=3, cutoff=0.5)
    if not close:
        return None
    return "did you mean " + ", ".join(f"'{pool[c]}'" for c in close) + "?"


def _norm_name(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def _lookup_names(name: str) -> set[str]:
    """The spellings a typed name may match: itself, and without a hub owner ('google/vit-...' -> 'vit-...')."""
    norm = _norm_name(name)
    return {norm, norm.rsplit("/", 1)[-1]}


def recipe_names(r: Recipe) -> set[str]:
    """Every normalized name a recipe answers to. Display names and aliases keep their '/' (ViT-B/16);
    library identifiers also answer without their hub owner ('meta-llama/Llama-2-7b-hf' -> 'llama-2-7b-hf')."""
    names = {_norm_name(n) for n in (r.key, r.name, *r.aliases)}
    for ident in r.identifiers:
        names |= _lookup_names(ident.name)
    return names


def _all_citations(rec: Recommendation) -> set[str]:
    keys = set(rec.citations)
    if rec.rate is not None:
        keys.update(rec.rate.citations)
    for pos in rec.positions:
        keys.update(pos.citations)
    return keys


def _read(path: Path, model: type[M], problems: list[Problem], rel: str) -> M | None:
    # Imported here, on a cache miss only: a cached command never parses TOML.
    try:  # compiled, about 4x faster than the standard library's pure-Python parser
        import tomli as toml
    except ImportError:  # pragma: no cover
        import tomllib as toml  # type: ignore[no-redef]
    from pydantic import ValidationError

    try:
        raw: dict[str, Any] = toml.loads(path.read_text(encoding="utf-8"))
    except (toml.TOMLDecodeError, UnicodeDecodeError) as exc:
        problems.append(Problem(rel, "", f"not valid TOML: {exc}"))
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(file)"
            problems.append(Problem(rel, loc, err["msg"]))
        return None


def load(root: Path | None = None, *, check_examples: bool = False) -> KnowledgeBase:
    """Load and validate every file under ``root``; raise one KnowledgeError listing all problems.

    ``check_examples`` also compiles every recommendation's code examples (the test suite does).
    """
    root = root or data_root()
    problems: list[Problem] = []
    kb = KnowledgeBase(root=root)

    for path in sorted((root / "citations").glob("*")):
        rel = f"citations/{path.name}"
        if path.suffix != ".toml":
            problems.append(Problem(rel, "", "unexpected file: knowledge files end in .toml"))
            continue
        cit = _read(path, Citation, problems, rel)
        if cit is None:
            continue
        if cit.key != path.stem:
            problems.append(Problem(rel, "key", f"'{cit.key}' does not match the file name '{path.stem}'"))
        elif cit.key in kb.citations:
            problems.append(Problem(rel, "key", f"duplicate key '{cit.key}'"))
        else:
            kb.citations[cit.key] = cit

    for path in sorted((root / "recommendations").glob("*")):
        rel = f"recommendations/{path.name}"
        if path.suffix != ".toml":
            problems.append(Problem(rel, "", "unexpected file: knowledge files end in .toml"))
            continue
        rec = _read(path, Recommendation, problems, rel)
        if rec is None:
            continue
        if rec.id != path.stem:
            problems.append(Problem(rel, "id", f"'{rec.id}' does not match the file name '{path.stem}'"))
        elif rec.id in kb.recommendations:
            problems.append(Problem(rel, "id", f"duplicate ID '{rec.id}'"))
        else:
            kb.recommendations[rec.id] = rec

    recipe_dir = root / "recipes"
    for path in sorted(recipe_dir.glob("*")) if recipe_dir.is_dir() else []:
        rel = f"recipes/{path.name}"
        if path.suffix != ".toml":
            problems.append(Problem(rel, "", "unexpected file: knowledge files end in .toml"))
            continue
        recipe = _read(path, Recipe, problems, rel)
        if recipe is None:
            continue
        if recipe.key != path.stem:
            problems.append(Problem(rel, "key", f"'{recipe.key}' does not match the file name '{path.stem}'"))
        elif recipe.key in kb.recipes:
            problems.append(Problem(rel, "key", f"duplicate key '{recipe.key}'"))
        else:
            kb.recipes[recipe.key] = recipe

    problems.extend(_cross_check(kb, check_examples=check_examples))
    problems.extend(_check_recipes(kb))
    if problems:
        listing = "\n".join(f"  {p}" for p in problems)
        raise KnowledgeError(
            f"the knowledge base at {root} has {len(problems)} problem(s):\n{listing}",
            hint="fix the files named above; every field must match the schema in advisor/schema.py",
        )
    return kb


def _cross_check(kb: KnowledgeBase, *, check_examples: bool) -> list[Problem]:
    problems: list[Problem] = []
    slugs: dict[str, str] = {}
    for rec in kb.recommendations.values():
        rel = f"recommendations/{rec.id}.toml"
        refs: list[tuple[str, str]] = [(f"citations[{i}]", k) for i, k in enumerate(rec.citations)]
        if rec.rate is not None:
            refs += [(f"rate.citations[{i}]", k) for i, k in enumerate(rec.rate.citations)]
        for j, pos in enumerate(rec.positions):
            refs += [(f"positions[{j}].citations[{i}]", k) for i, k in enumerate(pos.citations)]
        for j, th in enumerate(rec.engine.thresholds if rec.engine is not None else []):
            refs += [(f"engine.thresholds[{j}].citations[{i}]", k) for i, k in enumerate(th.citations)]
        for where, key in refs:
            if key not in kb.citations:
                hint = _suggest(key, kb.citations)
                problems.append(Problem(rel, where, f"unknown citation '{key}'" + (f"; {hint}" if hint else "")))
        for i, other in enumerate(rec.related):
            if other not in kb.recommendations:
                problems.append(Problem(rel, f"related[{i}]", f"unknown recommendation '{other}'"))
            elif other == rec.id:
                problems.append(Problem(rel, f"related[{i}]", "a recommendation cannot relate to itself"))
        if rec.engine is not None:
            for i, other in enumerate(rec.engine.supersedes):
                if other not in kb.recommendations:
                    problems.append(Problem(rel, f"engine.supersedes[{i}]", f"unknown recommendation '{other}'"))
        if rec.audit is not None:
            if rec.audit.slug in slugs:
                problems.append(
                    Problem(rel, "audit.slug", f"'{rec.audit.slug}' is already used by {slugs[rec.audit.slug]}")
                )
            slugs[rec.audit.slug] = rec.id
        if check_examples:
            for part in ("before", "after"):
                code = getattr(rec.example, part)
                try:
                    compile(code, f"{rel}:example.{part}", "exec")
                except SyntaxError as exc:
                    problems.append(Problem(rel, f"example.{part}", f"does not compile: {exc.msg} (line {exc.lineno})"))
    return problems


def _check_recipes(kb: KnowledgeBase) -> list[Problem]:
    """Citations resolve, specs are valid architecture specs, and no two recipes share a name."""
    from pydantic import ValidationError as _VE

    from advisor.spec import Spec

    problems: list[Problem] = []
    owner: dict[str, str] = {}
    for r in kb.recipes.values():
        rel = f"recipes/{r.key}.toml"
        refs = [(f"citations[{i}]", k) for i, k in enumerate(r.citations)]
        refs += [(f"no_dropout_sources[{i}].citation", s.citation) for i, s in enumerate(r.no_dropout_sources)]
        for j, site in enumerate(r.sites):
            refs += [(f"sites[{j}].sources[{i}].citation", s.citation) for i, s in enumerate(site.sources)]
        for j, d in enumerate(r.disagreements):
            refs += [(f"disagreements[{j}].citations[{i}]", k) for i, k in enumerate(d.citations)]
        for where, key in refs:
            if key not in kb.citations:
                hint = _suggest(key, kb.citations)
                problems.append(Problem(rel, where, f"unknown citation '{key}'" + (f"; {hint}" if hint else "")))
        try:
            Spec.model_validate(r.spec)
        except _VE as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"]) or "(spec)"
                problems.append(Problem(rel, f"spec.{loc}", err["msg"]))
        for name in sorted(recipe_names(r)):
            if name in owner and owner[name] != r.key:
                problems.append(Problem(rel, "aliases", f"name '{name}' is also used by recipe '{owner[name]}'"))
            owner.setdefault(name, r.key)
    return problems


CACHE_FORMAT = 2  # the layout written by _write_cache


def _install_key(root: Path) -> str:
    """What one installation is: its knowledge folder, Python and pydantic. Two installs that share a cache
    folder (two virtual environments, two checkouts) get two cache files and never evict each other."""
    import pydantic

    ident = f"{CACHE_FORMAT}|{root.resolve()}|{sys.implementation.cache_tag}|{sys.version}|{pydantic.VERSION}"
    return hashlib.sha256(ident.encode()).hexdigest()[:12]


def _fingerprint(root: Path) -> str:
    """Changes whenever a knowledge file, the schema, the search vocabulary, the tool version, Python or
    pydantic changes."""
    from advisor import __version__

    h = hashlib.sha256(f"{__version__}|{_install_key(root)}".encode())
    here = Path(__file__).parent
    # search.py and thesaurus.py decide the cached search indexes (advisor.search).
    files = [(here.name, name, os.stat(here / name)) for name in ("schema.py", "search.py", "thesaurus.py")]
    # Every file one folder down, sorted by (folder, name) as sorted(root.glob("*/*")) would be; os.scandir
    # because pathlib's globbing and sorting took most of a cache hit's time.
    with os.scandir(root) as top:
        folders = sorted(entry.name for entry in top if entry.is_dir())
    for folder in folders:
        with os.scandir(root / folder) as entries:
            files += [(folder, e.name, e.stat()) for e in sorted(entries, key=lambda e: e.name)]
    for folder, name, st in files:
        h.update(f"{folder}/{name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:24]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dropout-advisor"


def cache_path(root: Path) -> Path:
    """``kb-<install>-<content>.pickle`` in :func:`cache_dir`."""
    return cache_dir() / f"kb-{_install_key(root)}-{_fingerprint(root)}.pickle"


def load_cached(root: Path | None = None) -> KnowledgeBase:
    """:func:`load`, served from a per-user cache of the validated result while nothing has changed.

    Building pydantic's validators costs more than the rest of a command's start-up, so the validated
    knowledge base is pickled, one entry at a time, with the search indexes built from it. The file is
    keyed by the installation (knowledge folder, Python and pydantic versions) and by the files' names,
    sizes and modification times, the schema and the tool version; on a hit no TOML is parsed, no model
    validated, and an entry is unpickled only when a command reads it (:class:`LazyMap`). Writing a new
    file removes only this installation's older ones. The cache is written atomically and ignored
    whenever it cannot be read or written; ``DROPOUT_ADVISOR_NO_CACHE=1`` turns it off.
    """
    root = root or data_root()
    if os.environ.get("DROPOUT_ADVISOR_NO_CACHE") == "1":
        return load(root)
    try:
        path = cache_path(root)
    except OSError:
        return load(root)
    try:
        with path.open("rb") as fh:
            cached = _unpickle_file(fh)
        if isinstance(cached, dict) and cached.get("format") == CACHE_FORMAT and cached.get("root") == str(root):
            return KnowledgeBase(
                root=root,
                citations=_lazy(cached["citations"]),
                recommendations=_lazy(cached["recommendations"]),
                recipes=_lazy(cached["recipes"]),
                derived=_lazy(cached["derived"]),
            )
    except Exception:
        pass
    kb = load(root)
    from advisor.search import knowledge_index

    knowledge_index(kb)  # built once, then served from the cache with the knowledge base
    _write_cache(path, kb)
    return kb


def _lazy(entries: dict[str, bytes]) -> LazyMap[Any]:
    return LazyMap({key: _Pickled(data) for key, data in entries.items()})


def _write_cache(path: Path, kb: KnowledgeBase) -> None:
    """Write the cache atomically, then remove this installation's older files (never another's); a cache
    that cannot be written is simply skipped."""
    import pickle
    import tempfile

    def entries(mapping: MutableMapping[str, Any]) -> dict[str, bytes]:
        return {k: pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL) for k, v in mapping.items()}

    tmp: str | None = None
    try:
        doc = {
            "format": CACHE_FORMAT,
            "root": str(kb.root),
            "citations": entries(kb.citations),
            "recommendations": entries(kb.recommendations),
            "recipes": entries(kb.recipes),
            "derived": entries(kb.derived),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(doc, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        tmp = None
        install = path.name.split("-")[1]
        for old in path.parent.glob(f"kb-{install}-*.pickle"):
            if old != path:
                old.unlink(missing_ok=True)
    except (OSError, pickle.PicklingError):
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


@functools.lru_cache(maxsize=1)
def default_kb() -> KnowledgeBase:
    """The installed knowledge base, loaded once per process."""
    return load_cached()
