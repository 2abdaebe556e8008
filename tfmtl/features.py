"""What the model needs to know about the data, learned from the training rows only.

A :class:`FeatureSpace` holds the vocabularies, numeric bucket boundaries, the training item catalog and the
item frequencies. It is plain data (JSON round-trip), so a run folder can rebuild its model without the
original tables; it also turns interaction rows into the raw feature arrays the towers read.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfmtl.config import ModelConfig
from tfmtl.data.history import (
    HISTORY,
    HISTORY_LABELS,
    history_features,
    next_item_sequences,
    user_histories,
)
from tfmtl.data.interactions import ITEM_ID, USER_ID, InteractionData
from tfmtl.data.pipeline import PAD, feature_arrays, multi_valued_widths
from tfmtl.data.vocab import Vocabulary
from tfmtl.files import write_text_atomic
from tfmtl.targets import Target, content_key, rating_label, resolve_targets, target_arrays


@dataclass
class FeatureSpace:
    """Feature columns per tower, their vocabularies and statistics, and the item catalog.

    Attributes:
        user_categorical / user_numeric / user_multi_valued / user_text: the user tower's columns.
        item_categorical / item_numeric / item_multi_valued / item_text: the item tower's columns.
        vocabularies: name -> known values (OOV index 0), built from the training rows.
        boundaries: numeric column -> quantile bucket boundaries.
        widths: multi-valued column -> padded width.
        prefixes: categorical column -> kept prefix length.
        rating_label: the rating label (named ``rating``, or the only one; "" when there is none): the label the
            history carries (rated history, each position's label in sequence training).
        rating_mean: the training mean of that label.
        targets: each task resolved against the data (:class:`~tfmtl.targets.Target`).
        item_counts: training interactions per item of ``vocabularies["item_id"]`` (for logQ).
        genre_column: the item column the content task predicts, multi-valued or numeric ("" when none).
        history_length: H (0 = no behaviour sequence).
        rated_history: the ranking heads also read the history's ratings (``ranking.history_attention``).
        history_mode: ``before`` (sequence) or ``others`` (bag); see ``ModelConfig.history_mode``.
        user_texts: user text column -> the distinct texts of the user table (the text encoder's cache).
        user_vector / item_vector: precomputed embedding column -> its dim (float32 [B, dim] inputs, zeros where
            missing).
    """

    user_categorical: tuple[str, ...]
    user_numeric: tuple[str, ...]
    user_multi_valued: tuple[str, ...]
    item_categorical: tuple[str, ...]
    item_numeric: tuple[str, ...]
    item_multi_valued: tuple[str, ...]
    item_text: tuple[str, ...]
    vocabularies: dict[str, tuple[str, ...]]
    boundaries: dict[str, list[float]]
    widths: dict[str, int]
    prefixes: dict[str, int]
    rating_label: str
    rating_mean: float
    item_counts: list[int]
    genre_column: str
    history_length: int
    rated_history: bool = False
    history_mode: str = "before"
    targets: dict[str, Target] = field(default_factory=dict)  # task -> what it reads (see tfmtl.targets)
    user_text: tuple[str, ...] = ()
    user_texts: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    user_vector: dict[str, int] = field(default_factory=dict)
    item_vector: dict[str, int] = field(default_factory=dict)
    catalog: dict[str, Any] = field(default_factory=dict, repr=False)  # item column -> values, every item

    # --- building ---

    @classmethod
    def build(cls, config: ModelConfig, data: InteractionData, train_rows: np.ndarray) -> FeatureSpace:
        """Validate the configured features against the data, then learn everything from ``train_rows``."""
        user = _select(config.user_tower.features, data.user_features, "model.user_tower.features", data,
                       text=True)
        item = _select(config.item_tower.features, data.item_features, "model.item_tower.features", data)
        text = _select_text(config.text_features, data)
        for column in list(config.user_tower.prefixes):
            if column not in user["categorical"]:
                # A default prefix for a column this data lacks is simply unused.
                if config.user_tower.features is not None:
                    raise ValueError(f"config field 'model.user_tower.prefixes' names '{column}', which is not a "
                                     f"categorical user feature (have: {', '.join(user['categorical']) or 'none'})")
        prefixes = {c: n for c, n in config.user_tower.prefixes.items() if c in user["categorical"]}
        prefixes.update({c: n for c, n in config.item_tower.prefixes.items() if c in item["categorical"]})
        targets = resolve_targets(config, data.labels, data.interactions, tuple(data.item_features.multi_valued),
                                  train_rows, item_numeric=tuple(data.item_features.numeric))
        content = [t.feature for t in targets.values() if t.type == "content"]
        genre_column = content[0] if content else ""
        numeric_content = genre_column in data.item_features.numeric
        ranking = [t for t in targets.values() if t.ranking]
        label = rating_label(data.labels, "model.tasks") if data.labels and (
            "rating" in data.labels or len(data.labels) == 1) else ""
        if config.trains_all_positions:
            for target in ranking:  # each position's label comes from the history's label sequence
                if target.label != label or target.sample_weight:
                    raise ValueError(f"config field 'model.tasks.{target.name}' reads label {target.label!r}"
                                     f"{' with sample weights' if target.sample_weight else ''}: with the causal "
                                     f"tower trained on every position, ranking tasks can read only the history's "
                                     f"label ({label or 'none'}) for now")

        joined = data.joined(train_rows)
        vocabularies: dict[str, tuple[str, ...]] = {}
        for name in (USER_ID, ITEM_ID):
            vocabularies[name] = Vocabulary.build(name, joined[name].astype(str)).values
        for column in (*user["categorical"], *item["categorical"]):
            values = joined[column].fillna(PAD).astype(str)
            if column in prefixes:
                values = values.str[: prefixes[column]]
            vocabularies[column] = Vocabulary.build(column, values).values
        for column in {*user["multi_valued"], *item["multi_valued"],
                       *([genre_column] if genre_column and not numeric_content else [])}:
            vocabularies[column] = Vocabulary.build(column, joined[column]).values
        boundaries = {}
        numeric = [(c, config.user_tower.numeric_buckets) for c in user["numeric"]] + \
            [(c, config.item_tower.numeric_buckets) for c in item["numeric"]]
        for column, buckets in numeric:
            values = joined[column].astype("float64").dropna().to_numpy()
            quantiles = np.quantile(values, np.linspace(0, 1, buckets + 1)[1:-1]) if len(values) else np.zeros(0)
            boundaries[column] = sorted({float(q) for q in quantiles})
        if numeric_content:  # standardised over the training items, each once
            values = joined.drop_duplicates(ITEM_ID)[genre_column].astype("float64").dropna()
            name = next(n for n, t in targets.items() if t.type == "content")
            targets[name] = dataclasses.replace(targets[name], mean=float(values.mean()) if len(values) else 0.0,
                                                scale=float(values.std()) if len(values) > 1 and values.std() > 0
                                                else 1.0)
        counts = joined[ITEM_ID].astype(str).value_counts()
        space = cls(
            user_categorical=user["categorical"], user_numeric=user["numeric"], user_multi_valued=user["multi_valued"],
            item_categorical=item["categorical"], item_numeric=item["numeric"], item_multi_valued=item["multi_valued"],
            item_text=text, vocabularies=vocabularies, boundaries=boundaries,
            widths={c: w for c, w in multi_valued_widths(data).items()}, prefixes=prefixes, rating_label=label,
            rating_mean=float(joined[label].mean()) if label else 0.0,
            item_counts=[int(counts.get(i, 0)) for i in vocabularies[ITEM_ID]], genre_column=genre_column,
            history_length=config.history_length, history_mode=config.history_mode,
            rated_history=bool(config.ranking.history_attention and config.history_length and label and ranking),
            targets=targets, user_text=user["text"],
            user_vector={c: data.user_features.vector[c] for c in user["vector"]},
            item_vector={c: data.item_features.vector[c] for c in item["vector"]},
            user_texts={c: tuple(sorted(set(data.users[c].fillna(PAD).astype(str)))) for c in user["text"]})
        space.catalog = space.item_arrays(data, data.items)
        return space

    # --- arrays for tf.data ---

    @property
    def content_is_numeric(self) -> bool:
        """The content task predicts a numeric item feature (MSE), not a multi-valued one (cross-entropy)."""
        return bool(self.genre_column) and self.genre_column in self.item_numeric

    @property
    def item_columns(self) -> tuple[str, ...]:
        genre = (self.genre_column,) if self.genre_column and self.genre_column not in self.item_multi_valued else ()
        return (ITEM_ID, *self.item_categorical, *self.item_numeric, *self.item_multi_valued, *self.item_text,
                *self.item_vector, *genre)

    @property
    def user_columns(self) -> tuple[str, ...]:
        history = ((HISTORY, HISTORY_LABELS) if self.rated_history else (HISTORY,)) if self.history_length else ()
        return (USER_ID, *self.user_features, *history)

    @property
    def user_features(self) -> tuple[str, ...]:
        """The user tower's side features: what a user table (and the serving snapshot) holds per user."""
        return (*self.user_categorical, *self.user_text, *self.user_numeric, *self.user_multi_valued, *self.user_vector)

    def item_arrays(self, data: InteractionData, items: Any) -> dict[str, np.ndarray]:
        """Item-tower inputs for rows of an item table (or joined interactions)."""
        arrays = feature_arrays(items, data, include_labels=False)
        return {c: arrays[c] for c in self.item_columns} | self._content_values(items)

    def _content_values(self, frame: Any) -> dict[str, np.ndarray]:
        if not self.content_is_numeric:
            return {}
        return {content_key(self.genre_column): frame[self.genre_column].to_numpy(np.float32)}

    def interaction_arrays(self, data: InteractionData, train_rows: np.ndarray, rows: np.ndarray, *,
                           is_training: bool, until_row_time: bool = True) -> dict[str, np.ndarray]:
        """Both towers' inputs plus labels for interaction ``rows``."""
        frame = data.joined(rows)
        arrays = feature_arrays(frame, data)
        out = {c: arrays[c] for c in (*self.item_columns, *self.user_columns) if c not in (HISTORY, HISTORY_LABELS)}
        if self.history_length:
            out.update(history_features(data, train_rows, rows, length=self.history_length, is_training=is_training,
                                        until_row_time=until_row_time,
                                        label=self.rating_label if self.rated_history else None,
                                        mode=self.history_mode))
        out.update({label: arrays[label] for label in data.labels})  # raw, for metrics and inspection
        out.update(target_arrays(self.targets, frame))
        out.update(self._content_values(frame))
        return out

    def next_item_arrays(self, data: InteractionData, train_rows: np.ndarray, *,
                         windows: str = "all") -> tuple[dict[str, np.ndarray], int]:
        """The user tower's inputs for the all-positions objective: one row per training sequence (see
        :func:`~tfmtl.data.history.next_item_sequences`), with the user's side features; and the number of users
        skipped for having one training event."""
        sequences, newest, skipped = next_item_sequences(data, train_rows, length=self.history_length,
                                                         windows=windows, label=self.rating_label or None)
        arrays = feature_arrays(data.joined(newest), data)
        out = {c: arrays[c] for c in self.user_columns if c not in (HISTORY, HISTORY_LABELS)}
        out.update(sequences)
        return out, skipped

    def histories(self, data: InteractionData, train_rows: np.ndarray) -> dict[str, list[str]]:
        return user_histories(data, train_rows, length=max(1, self.history_length))

    # --- persistence ---

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "catalog"}
        out["targets"] = {k: t.to_json() for k, t in self.targets.items()}
        out["catalog"] = {k: v.tolist() for k, v in self.catalog.items()}
        return out

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> FeatureSpace:
        values = dict(values)
        catalog = values.pop("catalog", {})
        for key in ("user_categorical", "user_numeric", "user_multi_valued", "item_categorical", "item_numeric",
                    "item_multi_valued", "item_text", "user_text"):
            if key in values:  # user_text: absent from run folders written before users had text
                values[key] = tuple(values[key])
        values["vocabularies"] = {k: tuple(v) for k, v in values["vocabularies"].items()}
        values["user_texts"] = {k: tuple(v) for k, v in values.get("user_texts", {}).items()}
        values["targets"] = {k: Target(**t) for k, t in values.get("targets", {}).items()}
        space = cls(**values)
        space.catalog = {k: space._catalog_array(k, v) for k, v in catalog.items()}
        return space

    def _catalog_array(self, key: str, values: list[Any]) -> np.ndarray:
        if key in self.item_vector:  # [N, dim], also when N is 0
            return np.array(values, np.float32).reshape(-1, self.item_vector[key])
        numeric = key in self.item_numeric or key.startswith(content_key(""))
        return np.array(values, dtype=np.float32 if numeric else object)

    def save(self, path: Path) -> None:
        write_text_atomic(path, json.dumps(self.to_json()))

    @classmethod
    def load(cls, path: Path) -> FeatureSpace:
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))


def _select(wanted: tuple[str, ...] | None, declared: Any, field_name: str,
            data: InteractionData, *, text: bool = False) -> dict[str, tuple[str, ...]]:
    """The declared features a tower reads (all, or those ``wanted``); ``text``: text columns too (the item tower's
    are chosen by ``model.text_features``)."""
    kinds = {"categorical": declared.categorical, "numeric": declared.numeric, "multi_valued": declared.multi_valued,
             "vector": tuple(declared.vector), **({"text": declared.text} if text else {})}
    if wanted is None:
        return {k: tuple(v) for k, v in kinds.items()}
    known = [c for v in kinds.values() for c in v]
    for name in wanted:
        if name not in known:
            raise ValueError(f"config field '{field_name}' names unknown feature '{name}' "
                             f"(known: {', '.join(known) or 'none'})")
    return {k: tuple(c for c in v if c in wanted) for k, v in kinds.items()}


def _select_text(wanted: tuple[str, ...] | None, data: InteractionData) -> tuple[str, ...]:
    declared = data.item_features.text
    if wanted is None:
        return tuple(declared)
    for name in wanted:
        if name not in declared:
            raise ValueError(f"config field 'model.text_features' names unknown text column '{name}' "
                             f"(item text columns: {', '.join(declared) or 'none'})")
    return tuple(wanted)
