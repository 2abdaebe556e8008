"""The schema file that describes a user's own data: which column plays which role.

Example (YAML or JSON; paths are relative to the schema file)::

    name: my-shop
    on_bad_rows: error            # or "skip": bad rows are dropped, counted and reported
    interactions:
      path: ratings.csv
      user_id: uid
      item_id: sku
      labels: {rating: stars}     # label name -> numeric column
      timestamp: ts
      timestamp_format: unix      # unix | unix_ms | iso | a strftime pattern
    items:
      path: items.parquet
      item_id: sku
      text: [title, description]
      categorical: [brand]
      multi_valued: {genres: "|"} # column -> separator inside a cell
      numeric: [price]
      vector:                     # precomputed embeddings (any LLM, CLIP, audio): name -> dim, or dim + source
        clip: 512                 # a column of the table: Parquet list<float> (or a CSV cell "0.1 0.2 ...")
        text_llm: {dim: 1024, path: llm.npz}   # a file of ids [N] + vectors [N, dim] (see tfmtl.data.vectors)
    users:
      path: users.csv
      user_id: uid
      categorical: [gender, occupation]
      numeric: [age]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tfmtl.data.errors import DataError

BAD_ROW_POLICIES = ("error", "skip")
TIMESTAMP_FORMATS = ("unix", "unix_ms", "iso")
MAX_VECTOR_DIM = 65_536
VECTOR_FILE_SUFFIXES = (".npz", ".npy")


@dataclass(frozen=True)
class FeatureColumns:
    """Feature columns of one entity table, grouped by how the model reads them."""

    text: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    multi_valued: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    vector: dict[str, int] = field(default_factory=dict)  # precomputed embedding column -> its dim

    @property
    def all(self) -> tuple[str, ...]:
        return self.text + self.categorical + self.multi_valued + self.numeric + tuple(self.vector)

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": list(self.text),
            "categorical": list(self.categorical),
            "multi_valued": list(self.multi_valued),
            "numeric": list(self.numeric),
            "vector": dict(self.vector),
        }


@dataclass(frozen=True)
class InteractionsSpec:
    path: Path
    user_id: str
    item_id: str
    labels: dict[str, str] = field(default_factory=dict)
    timestamp: str | None = None
    timestamp_format: str = "unix"
    separator: str | None = None


@dataclass(frozen=True)
class VectorSource:
    """Where a vector feature's values come from when they are not a column of the table: ``path`` is a ``.npz``
    holding ``ids`` [N] and ``vectors`` [N, dim], or a ``.npy`` of vectors [N, dim] with ``ids`` (a ``.npy`` or a
    text file, one id a line) naming each row's entity. Ids, never row order: a file sorted differently from the
    table, or written for another table, cannot be read as the wrong entities' vectors."""

    path: Path
    ids: Path | None = None


@dataclass(frozen=True)
class EntitySpec:
    """An item or user table: its id column, its features and, for multi-valued ones, separators; vector features
    read from a file (not the table) have a ``vector_sources`` entry."""

    path: Path
    id_column: str
    features: FeatureColumns
    multi_valued_separators: dict[str, str] = field(default_factory=dict)
    separator: str | None = None
    vector_sources: dict[str, VectorSource] = field(default_factory=dict)


@dataclass(frozen=True)
class Schema:
    name: str
    interactions: InteractionsSpec
    items: EntitySpec | None = None
    users: EntitySpec | None = None
    on_bad_rows: str = "error"
    source: str = "<dict>"

    @classmethod
    def from_file(cls, path: str | Path) -> Schema:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DataError("schema file not found", file=str(path)) from None
        except UnicodeDecodeError as error:
            raise DataError(f"schema file is not valid UTF-8 ({error.reason} at byte {error.start})",
                            file=str(path)) from None
        try:
            # safe_load: a schema file must never be able to construct Python objects.
            raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (yaml.YAMLError, json.JSONDecodeError) as error:
            raise DataError(f"schema file cannot be parsed: {error}", file=str(path)) from None
        return cls.from_dict(raw, base_dir=path.parent, source=str(path))

    @classmethod
    def from_dict(cls, raw: Any, *, base_dir: str | Path = ".", source: str = "<dict>") -> Schema:
        reader = _SectionReader(source)
        top = reader.mapping(raw, "schema", required={"interactions"},
                             optional={"name", "on_bad_rows", "items", "users", "allow_outside_paths"})
        policy = reader.choice(top.get("on_bad_rows", "error"), "on_bad_rows", BAD_ROW_POLICIES)
        outside = top.get("allow_outside_paths", False)
        if not isinstance(outside, bool):
            raise DataError(f"schema field 'allow_outside_paths' must be true or false, got {outside!r}",
                            file=reader.source)
        folder = _Folder(Path(base_dir), allow_outside=outside)
        return cls(
            name=reader.string(top.get("name", Path(source).stem), "name"),
            interactions=_interactions(reader, top["interactions"], folder),
            items=_entity(reader, top["items"], folder, "items", "item_id") if "items" in top else None,
            users=_entity(reader, top["users"], folder, "users", "user_id") if "users" in top else None,
            on_bad_rows=policy,
            source=source,
        )


@dataclass(frozen=True)
class _Folder:
    """The schema's folder: data paths resolve inside it unless the schema allows outside paths (a schema from
    elsewhere must not be able to read /etc/hostname or ~/.ssh through a `path:`)."""

    base: Path
    allow_outside: bool

    def path(self, reader: _SectionReader, value: Any, field_name: str) -> Path:
        path = self.base / reader.string(value, field_name)
        if not self.allow_outside and not path.resolve().is_relative_to(self.base.resolve()):
            raise DataError(f"schema field '{field_name}' = {value!r} is outside the schema's folder "
                            f"{self.base.resolve()}; move the file there, or set 'allow_outside_paths: true' in a "
                            "schema you trust", file=reader.source)
        return path


def _interactions(reader: _SectionReader, raw: Any, folder: _Folder) -> InteractionsSpec:
    section = reader.mapping(raw, "interactions", required={"path", "user_id", "item_id"},
                             optional={"labels", "timestamp", "timestamp_format", "separator"})
    labels = section.get("labels", {})
    if isinstance(labels, list):  # `labels: [rating]` means the label is named like its column
        labels = {reader.string(name, "interactions.labels"): name for name in labels}
    labels = {reader.string(k, "interactions.labels"): reader.string(v, f"interactions.labels.{k}")
              for k, v in reader.mapping(labels, "interactions.labels").items()}
    columns = list(labels.values())
    shared = sorted({column for column in columns if columns.count(column) > 1})
    if shared:
        names = [name for name, column in labels.items() if column == shared[0]]
        raise DataError(f"interactions.labels {' and '.join(map(repr, names))} both read column {shared[0]!r}; "
                        "give each label its own column", file=reader.source, column=shared[0])
    reserved = {"user_id", "item_id", "timestamp"} & set(labels)
    if reserved:
        raise DataError(f"label name {sorted(reserved)[0]!r} is reserved; pick another name",
                        file=reader.source)
    timestamp_format = reader.string(section.get("timestamp_format", "unix"), "interactions.timestamp_format")
    if timestamp_format not in TIMESTAMP_FORMATS and "%" not in timestamp_format:
        raise DataError(f"interactions.timestamp_format {timestamp_format!r} must be one of "
                        f"{', '.join(TIMESTAMP_FORMATS)} or a strftime pattern such as '%Y-%m-%d'",
                        file=reader.source)
    timestamp = section.get("timestamp")
    return InteractionsSpec(
        path=folder.path(reader, section["path"], "interactions.path"),
        user_id=reader.string(section["user_id"], "interactions.user_id"),
        item_id=reader.string(section["item_id"], "interactions.item_id"),
        labels=labels,
        timestamp=None if timestamp is None else reader.string(timestamp, "interactions.timestamp"),
        timestamp_format=timestamp_format,
        separator=_optional_string(reader, section.get("separator"), "interactions.separator"),
    )


def _entity(reader: _SectionReader, raw: Any, folder: _Folder, name: str, id_key: str) -> EntitySpec:
    section = reader.mapping(raw, name, required={"path", id_key},
                             optional={"text", "categorical", "multi_valued", "numeric", "vector", "separator"})
    multi = section.get("multi_valued", {})
    if isinstance(multi, list):  # default separator "|"
        multi = {column: "|" for column in multi}
    multi = {reader.string(k, f"{name}.multi_valued"): reader.string(v, f"{name}.multi_valued.{k}")
             for k, v in reader.mapping(multi, f"{name}.multi_valued").items()}
    dims, sources = _vectors(reader, section.get("vector", {}), folder, f"{name}.vector")
    features = FeatureColumns(
        text=reader.strings(section.get("text", []), f"{name}.text"),
        categorical=reader.strings(section.get("categorical", []), f"{name}.categorical"),
        multi_valued=tuple(multi),
        numeric=reader.strings(section.get("numeric", []), f"{name}.numeric"),
        vector=dims,
    )
    id_column = reader.string(section[id_key], f"{name}.{id_key}")
    seen: dict[str, str] = {}
    for role, columns in features.as_dict().items():
        for column in columns:
            if column == id_column or column in seen:
                first = "the id" if column == id_column else f"'{seen[column]}'"
                raise DataError(f"column '{column}' is listed as '{role}' and already as {first}",
                                file=reader.source)
            seen[column] = role
    return EntitySpec(
        path=folder.path(reader, section["path"], f"{name}.path"),
        id_column=id_column,
        features=features,
        multi_valued_separators=multi,
        separator=_optional_string(reader, section.get("separator"), f"{name}.separator"),
        vector_sources=sources,
    )


def _vectors(reader: _SectionReader, raw: Any, folder: _Folder,
             field_name: str) -> tuple[dict[str, int], dict[str, VectorSource]]:
    """``vector: {name: dim}`` (a column of the table) or ``{name: {dim: D, path: FILE[, ids: FILE]}}``."""
    dims: dict[str, int] = {}
    sources: dict[str, VectorSource] = {}
    for column, value in reader.mapping(raw, field_name).items():
        column = reader.string(column, field_name)
        where = f"{field_name}.{column}"
        if isinstance(value, dict):
            entry = reader.mapping(value, where, required={"dim"}, optional={"path", "ids"})
            dims[column] = reader.dim(entry["dim"], f"{where}.dim")
            if "path" in entry:
                path = folder.path(reader, entry["path"], f"{where}.path")
                if path.suffix.lower() not in VECTOR_FILE_SUFFIXES:
                    raise DataError(f"field '{where}.path' = {entry['path']!r} must be a .npz (ids + vectors) or a "
                                    ".npy (vectors, with 'ids:')", file=reader.source)
                ids = folder.path(reader, entry["ids"], f"{where}.ids") if "ids" in entry else None
                if path.suffix.lower() == ".npy" and ids is None:
                    raise DataError(f"field '{where}' reads the .npy {entry['path']!r}, whose rows have no ids: add "
                                    "'ids: FILE' (a .npy or a text file, one id a line, row for row), or save a .npz "
                                    "with arrays 'ids' and 'vectors'", file=reader.source)
                if path.suffix.lower() == ".npz" and ids is not None:
                    raise DataError(f"field '{where}' reads the .npz {entry['path']!r}, which holds its own 'ids'; "
                                    "remove 'ids:'", file=reader.source)
                sources[column] = VectorSource(path, ids)
            elif "ids" in entry:
                raise DataError(f"field '{where}.ids' needs a 'path:' to the vectors it names", file=reader.source)
        else:
            dims[column] = reader.dim(value, where)
    return dims, sources


def _optional_string(reader: _SectionReader, value: Any, field_name: str) -> str | None:
    return None if value is None else reader.string(value, field_name)


@dataclass(frozen=True)
class _SectionReader:
    """Type checks for schema fields, with errors that name the field."""

    source: str

    def mapping(self, value: Any, field_name: str, *, required: set[str] = frozenset(),  # type: ignore[assignment]
                optional: set[str] | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise DataError(f"field '{field_name}' must be a mapping, got {type(value).__name__}",
                            file=self.source)
        missing = sorted(required - set(value))
        if missing:
            raise DataError(f"field '{field_name}' is missing required key '{missing[0]}'", file=self.source)
        if optional is not None:
            unknown = sorted(set(value) - required - optional)
            if unknown:
                allowed = ", ".join(sorted(required | optional))
                raise DataError(f"field '{field_name}' has unknown key '{unknown[0]}' (allowed: {allowed})",
                                file=self.source)
        return value

    def string(self, value: Any, field_name: str) -> str:
        if not isinstance(value, str) or not value:
            raise DataError(f"field '{field_name}' must be a non-empty string, got {value!r}", file=self.source)
        return value

    def strings(self, value: Any, field_name: str) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise DataError(f"field '{field_name}' must be a list of column names, got {value!r}",
                            file=self.source)
        return tuple(self.string(item, field_name) for item in value)

    def dim(self, value: Any, field_name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VECTOR_DIM:
            raise DataError(f"field '{field_name}' must be a vector's dimension, an integer from 1 to "
                            f"{MAX_VECTOR_DIM}, got {value!r}", file=self.source)
        return value

    def choice(self, value: Any, field_name: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise DataError(f"field '{field_name}' must be one of {', '.join(choices)}, got {value!r}",
                            file=self.source)
        return str(value)
