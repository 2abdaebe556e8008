"""THE wire contract: signature names, input and output keys, dtypes and shapes. Imported by export and client.

Every signature is a Predict signature whose input keys are feature names (raw values, no client-side
preprocessing) and whose output keys are domain nouns, never layer names. Labels are never inputs.

A value the client does not know is sent as *missing*: ``""`` for a string, NaN for a number, a row of ``""``
for a list. The served model fills a missing value from its snapshot of the known user or item (taken at
export, when the export keeps one), and otherwise uses the unknown bucket (strings) or the training table's mean
(numbers). So a known user can be queried by ``user_id`` alone, and a new user or item by its features.

A precomputed vector feature (an embedding made outside the model: an LLM's, CLIP's) is float32 [B, dim] (for
``rank`` candidates [B, C, dim]) with exactly the export's dim (the signature's shape and the manifest's
``vectors`` say it). A row of NaN is a missing vector: a known user or item gets its snapshot's vector, a new one
zeros (what training read for an entity without one). A row mixing NaN and numbers, an infinity or another dim is
refused (INVALID_ARGUMENT). Vectors are sent raw, as they were written for training (no normalisation is applied).

A model that reads the user's behaviour sequence takes it with the request: ``history_item_ids`` [B, H'], the
user's items oldest first, newest last, padded with ``""`` (on either side). The served model keeps the newest H
(the export's history length) and reports how many older ones it dropped (``history_dropped``). A row of padding
only falls back to the snapshot's history of a known user, or to no history (the manifest's ``history`` says which).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tfmtl.features import FeatureSpace

# === Signatures ===
RETRIEVE = "retrieve"  # also served as DEFAULT
RETRIEVE_EXCLUDING = "retrieve_excluding"
RANK = "rank"
USER_EMBEDDING = "user_embedding"
ITEM_EMBEDDING = "item_embedding"
DEFAULT = "serving_default"
SIGNATURES = (RETRIEVE, RETRIEVE_EXCLUDING, RANK, USER_EMBEDDING, ITEM_EMBEDDING)

# === Input keys (besides feature names) ===
USER_ID = "user_id"
ITEM_ID = "item_id"
K = "k"  # int32 [B]: one k per row, so TF Serving's batching (which splits every input on dim 0) can merge requests
EXCLUDE_ITEM_IDS = "exclude_item_ids"  # string [B, M], padded with ""
HISTORY_ITEM_IDS = "history_item_ids"  # string [B, H'], oldest first, newest last, padded with ""
EXCLUDE_HISTORY = "exclude_history"  # bool [B]: retrieve_excluding also leaves out the row's history_item_ids

# === Output keys ===
ITEM_IDS = "item_ids"  # string [B, K]; "" where a row asked for fewer than K or too few items remained
SCORES = "scores"  # float32 [B, K], sorted descending; ties keep catalog order; 0 where item_ids is ""
ITEM_TITLES = "item_titles"  # string [B, K]: the item's first text column, when the items have text
USER_EMBEDDING_OUTPUT = "user_embedding"  # float32 [B, D]
ITEM_EMBEDDING_OUTPUT = "item_embedding"  # float32 [B, D]
RATING = "rating"  # float32 [B, C]: the preset's regression task (every regression task: "<task>")
LIKE_PROBABILITY = "like_probability"  # float32 [B, C]: the preset's binary task ("<task>_probability")
RETRIEVAL_SCORE = "retrieval_score"  # float32 [B, C]: the user-item dot product retrieval ranks by
HISTORY_DROPPED = "history_dropped"  # int32 [B]: items of history_item_ids older than the newest H, not read

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

MISSING_STRING = ""
PAD = ""

# A standalone text encoder export: strings in, embeddings out.
TEXT_EMBEDDING = "embed_text"
TEXT_EMBEDDING_INPUT = "text"
TEXT_EMBEDDING_OUTPUT = "text_embedding"


@dataclass(frozen=True)
class Field:
    """One tensor of a signature: its key, dtype name (as TensorFlow spells it) and shape (None = any size)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


def user_inputs(space: FeatureSpace) -> list[Field]:
    """The user features a signature takes, each [B] (lists [B, W], vectors [B, dim]), and the behaviour sequence
    [B, H']."""
    return ([Field(USER_ID, "string", (None,))]
            + [Field(c, "string", (None,)) for c in (*space.user_categorical, *space.user_text)]
            + [Field(c, "float32", (None,)) for c in space.user_numeric]
            + [Field(c, "string", (None, None)) for c in space.user_multi_valued]
            + [Field(c, "float32", (None, dim)) for c, dim in space.user_vector.items()]
            + ([Field(HISTORY_ITEM_IDS, "string", (None, None))] if space.history_length else []))


def item_inputs(space: FeatureSpace, *, candidates: bool = False) -> list[Field]:
    """The item features a signature takes: [B] (lists [B, W], vectors [B, dim]), or [B, C] (lists [B, C, W],
    vectors [B, C, dim]) for candidates."""
    lead: tuple[None, ...] = (None, None) if candidates else (None,)
    return ([Field(ITEM_ID, "string", lead)]
            + [Field(c, "string", lead) for c in (*space.item_categorical, *space.item_text)]
            + [Field(c, "float32", lead) for c in space.item_numeric]
            + [Field(c, "string", (*lead, None)) for c in space.item_multi_valued]
            + [Field(c, "float32", (*lead, dim)) for c, dim in space.item_vector.items()])


def vector_inputs(space: FeatureSpace) -> dict[str, int]:
    """Input key -> dim of every precomputed vector input (user and item)."""
    return {**space.user_vector, **space.item_vector}


def has_retrieval(space: FeatureSpace) -> bool:
    return any(t.type == "retrieval" for t in space.targets.values())


def rank_outputs(space: FeatureSpace) -> list[str]:
    """``rank``'s outputs: the retrieval score, then ``<task>`` per regression task and ``<task>_probability``
    per binary task, in the config's order (the preset's are ``rating`` and ``like_probability``)."""
    names = [RETRIEVAL_SCORE] if has_retrieval(space) else []
    return names + [t.output for t in space.targets.values() if t.ranking]


def signature_inputs(space: FeatureSpace) -> dict[str, list[Field]]:
    """Signature name -> its inputs, for a model with these features and tasks."""
    users = user_inputs(space)
    out: dict[str, list[Field]] = {}
    if has_retrieval(space):
        out[RETRIEVE] = [*users, Field(K, "int32", (None,))]
        out[RETRIEVE_EXCLUDING] = [*out[RETRIEVE], Field(EXCLUDE_ITEM_IDS, "string", (None, None))]
        if space.history_length:
            out[RETRIEVE_EXCLUDING].append(Field(EXCLUDE_HISTORY, "bool", (None,)))
    if rank_outputs(space):
        out[RANK] = [*users, *item_inputs(space, candidates=True)]
    out[USER_EMBEDDING] = users
    out[ITEM_EMBEDDING] = item_inputs(space)
    return out


def signature_outputs(space: FeatureSpace, dim: int) -> dict[str, list[Field]]:
    """Signature name -> its outputs."""
    history = [Field(HISTORY_DROPPED, "int32", (None,))] if space.history_length else []
    ranked = [Field(ITEM_IDS, "string", (None, None)), Field(SCORES, "float32", (None, None))]
    if space.item_text:
        ranked.append(Field(ITEM_TITLES, "string", (None, None)))
    out: dict[str, list[Field]] = {}
    if has_retrieval(space):
        out[RETRIEVE] = ranked + history
        out[RETRIEVE_EXCLUDING] = ranked + history
    if rank_outputs(space):
        out[RANK] = [Field(name, "float32", (None, None)) for name in rank_outputs(space)] + history
    out[USER_EMBEDDING] = [Field(USER_EMBEDDING_OUTPUT, "float32", (None, dim)), *history]
    out[ITEM_EMBEDDING] = [Field(ITEM_EMBEDDING_OUTPUT, "float32", (None, dim))]
    return out


def check_model_name(name: str) -> str:
    """A model name is one path component of letters, digits, '_', '-', '.' (never '..' or a separator)."""
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"model name {name!r} is invalid: use letters, digits, '_', '-' and '.', starting with a "
                         "letter or digit, without '..' or path separators")
    return name


def feature_columns(specs: Mapping[str, tuple[str, tuple[int | None, ...]]], rows: Sequence[Mapping[str, Any]],
                    *, lead: int = 1) -> dict[str, np.ndarray]:
    """Request columns from feature dicts: key -> (dtype, shape) of the inputs wanted; what a row lacks is sent
    missing, lists are padded with ""; a vector (a float input with a dim after the ``lead`` ones) is any sequence
    or numpy array of its dim's numbers; a key no spec names, or a bad vector, is refused (ValueError naming it and
    the row)."""
    for number, row in enumerate(rows):
        unknown = sorted(set(row) - set(specs))
        if unknown:
            raise ValueError(f"row {number}: unknown feature '{unknown[0]}' (this model takes: "
                             f"{', '.join(sorted(specs))})")
    out = {}
    for key, (dtype, shape) in sorted(specs.items()):
        values = [row.get(key) for row in rows]
        if dtype == "string" and len(shape) > lead:
            lists = [[str(v) for v in (value or [])] for value in values]
            width = max([1, *map(len, lists)])
            out[key] = np.array([v + [PAD] * (width - len(v)) for v in lists], dtype=object).reshape(len(rows), width)
        elif dtype == "string":
            out[key] = np.array([MISSING_STRING if v is None else str(v) for v in values], dtype=object)
        elif dtype == "bool":
            out[key] = np.array([bool(v) for v in values], dtype=bool)  # None -> False, never NaN -> True
        elif len(shape) > lead:
            out[key] = _vectors(key, values, shape[-1])
        else:
            out[key] = np.array([np.nan if v is None else v for v in values], dtype=np.dtype(dtype))
    return out


def _vectors(key: str, values: Sequence[Any], dim: int | None) -> np.ndarray:
    """Vectors (None: missing, sent as a row of NaN) -> float32 [N, dim]."""
    vectors: list[np.ndarray | None] = []
    for number, value in enumerate(values):
        if value is None:
            vectors.append(None)
            continue
        try:
            vector = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError(f"row {number}: feature '{key}' must be a vector of numbers, got "
                             f"{type(value).__name__} {str(value)[:80]!r}") from None
        if vector.ndim != 1 or (dim is not None and len(vector) != dim):
            raise ValueError(f"row {number}: feature '{key}' must be a vector of {dim or 'the same number of'} "
                             f"numbers (this model's dim), got shape {vector.shape}")
        if not np.isfinite(vector).all():
            raise ValueError(f"row {number}: feature '{key}' holds NaN or an infinity; leave the feature out (or "
                             "None) for a missing vector")
        vectors.append(vector)
    width = dim if dim is not None else max([1, *(len(v) for v in vectors if v is not None)])
    out = np.full((len(vectors), width), np.nan, np.float32)
    for number, given in enumerate(vectors):
        if given is not None:
            if len(given) != width:
                raise ValueError(f"row {number}: feature '{key}' has {len(given)} numbers, an earlier row {width}")
            out[number] = given
    return out
