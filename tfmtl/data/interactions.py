"""The normalised interaction data every loader produces, and how a schema's tables become it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tfmtl.data.errors import SkipReport
from tfmtl.data.schema import EntitySpec, FeatureColumns, Schema
from tfmtl.data.tables import (
    RowPolicy,
    as_text,
    drop_duplicate_ids,
    parse_ids,
    parse_numeric,
    parse_timestamps,
    read_table,
    require_columns,
    split_multi_valued,
)
from tfmtl.data.vectors import attach_vectors, parse_vectors, read_vector_file

USER_ID = "user_id"
ITEM_ID = "item_id"
TIMESTAMP = "timestamp"


@dataclass
class InteractionData:
    """Interactions plus item and user tables, in one normalised schema.

    ``interactions``: ``user_id`` (str), ``item_id`` (str), one float column per label, ``timestamp``
    (int64 Unix seconds, when known), in the source's original row order.
    ``items`` / ``users``: one row per id, ``item_id`` / ``user_id`` first, then feature columns:
    text and categorical as str, multi-valued as tuples of str, numeric as float, vector as float32 arrays [dim]
    (None where missing).
    """

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    labels: tuple[str, ...]
    item_features: FeatureColumns
    user_features: FeatureColumns
    source: str = ""
    skipped: SkipReport = field(default_factory=SkipReport)
    # Facts a derived dataset adds to ``info()`` (JSON-ready), e.g. ml-1m-overviews' coverage of the catalogue.
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def has_timestamps(self) -> bool:
        return TIMESTAMP in self.interactions.columns

    def joined(self, rows: np.ndarray | None = None) -> pd.DataFrame:
        """Interactions (optionally a subset by position) with their item and user features attached."""
        frame = self.interactions if rows is None else self.interactions.iloc[rows]
        frame = frame.merge(self.items, on=ITEM_ID, how="left", validate="many_to_one")
        return frame.merge(self.users, on=USER_ID, how="left", validate="many_to_one")

    def info(self) -> dict[str, object]:
        ratings = self.interactions
        info: dict[str, object] = {
            "dataset": self.name,
            "ratings": int(len(ratings)),
            "users": int(len(self.users)),
            "items": int(len(self.items)),
            "rated_items": int(ratings[ITEM_ID].nunique()),
            "rating_users": int(ratings[USER_ID].nunique()),
            "labels": list(self.labels),
            "item_features": self.item_features.as_dict(),
            "user_features": self.user_features.as_dict(),
            "source": self.source,
            "skipped_rows": self.skipped.total,
            "skipped": self.skipped.as_dict(),
            "missing": self.skipped.missing_as_dict(),
        }
        for label in self.labels:
            values = ratings[label]
            info[f"{label}_mean"] = round(float(values.mean()), 4)
            info[f"{label}_min"] = float(values.min())
            info[f"{label}_max"] = float(values.max())
            info[f"{label}_missing"] = int(values.isna().sum())
        if self.has_timestamps:
            info["first_timestamp"] = int(ratings[TIMESTAMP].min())
            info["last_timestamp"] = int(ratings[TIMESTAMP].max())
        info["density"] = round(len(ratings) / max(1, len(self.users) * len(self.items)), 6)
        info.update(self.extras)
        return info


def load_from_schema(schema: Schema) -> InteractionData:
    """Reads and validates the tables a schema names."""
    skipped = SkipReport()
    policy = RowPolicy(schema.on_bad_rows, skipped)
    spec = schema.interactions
    file = str(spec.path)
    frame = read_table(spec.path, separator=spec.separator, policy=policy)
    required = [spec.user_id, spec.item_id, *spec.labels.values()]
    require_columns(frame, file, required + ([spec.timestamp] if spec.timestamp else []))
    frame = parse_ids(frame, spec.user_id, file=file, policy=policy)
    frame = parse_ids(frame, spec.item_id, file=file, policy=policy)
    for column in spec.labels.values():  # a missing label is kept (NaN): the tasks that read it mask that row
        frame = parse_numeric(frame, column, file=file, policy=policy, allow_missing=True)
    if spec.timestamp:
        frame = parse_timestamps(frame, spec.timestamp, spec.timestamp_format, file=file, policy=policy)
    renames = {spec.user_id: USER_ID, spec.item_id: ITEM_ID, **{v: k for k, v in spec.labels.items()}}
    if spec.timestamp:
        renames[spec.timestamp] = TIMESTAMP
    interactions = frame[list(renames)].rename(columns=renames)

    items, item_features = _entity_table(schema.items, ITEM_ID, interactions, policy)
    users, user_features = _entity_table(schema.users, USER_ID, interactions, policy)
    interactions = _drop_unknown(interactions, ITEM_ID, items, file, spec.item_id, policy)
    interactions = _drop_unknown(interactions, USER_ID, users, file, spec.user_id, policy)
    return finish(
        InteractionData(
            name=schema.name,
            interactions=interactions,
            items=items,
            users=users,
            labels=tuple(spec.labels),
            item_features=item_features,
            user_features=user_features,
            source=schema.source,
            skipped=skipped,
        )
    )


def _entity_table(spec: EntitySpec | None, id_name: str, interactions: pd.DataFrame,
                  policy: RowPolicy) -> tuple[pd.DataFrame, FeatureColumns]:
    if spec is None:  # no table: the ids seen in the interactions, without features
        ids = pd.unique(interactions[id_name])
        return pd.DataFrame({id_name: ids}), FeatureColumns()
    file = str(spec.path)
    frame = read_table(spec.path, separator=spec.separator, policy=policy)
    require_columns(frame, file, [spec.id_column, *(c for c in spec.features.all if c not in spec.vector_sources)])
    frame = parse_ids(frame, spec.id_column, file=file, policy=policy)
    frame = drop_duplicate_ids(frame, spec.id_column, file=file, policy=policy)
    for column in spec.features.numeric:
        frame = parse_numeric(frame, column, file=file, policy=policy, allow_missing=True)
    for column, dim in spec.features.vector.items():
        source = spec.vector_sources.get(column)
        if source is None:
            frame = parse_vectors(frame, column, dim, file=file, policy=policy)
        else:
            vectors = read_vector_file(source, column, dim, policy=policy)
            frame = attach_vectors(frame, spec.id_column, column, vectors, file=file, source=str(source.path),
                                   policy=policy)
    updates: dict[str, pd.Series] = {}
    for column in spec.features.text + spec.features.categorical:
        updates[column] = as_text(frame[column])
    for column, separator in spec.multi_valued_separators.items():
        updates[column] = split_multi_valued(frame[column], separator)
    frame = frame.assign(**updates)
    table = frame[[spec.id_column, *spec.features.all]].rename(columns={spec.id_column: id_name})
    return table, spec.features


def _drop_unknown(interactions: pd.DataFrame, id_name: str, table: pd.DataFrame, file: str, column: str,
                  policy: RowPolicy) -> pd.DataFrame:
    unknown = ~interactions[id_name].isin(table[id_name]).to_numpy()
    what = "item" if id_name == ITEM_ID else "user"
    return policy.reject(interactions, unknown, file=file, column=column,
                         reason=f"{what} id not found in the {what} table", values=interactions[id_name])


def finish(data: InteractionData) -> InteractionData:
    """Fixes dtypes and the positional index that splits refer to."""
    interactions = _plain_strings(data.interactions)
    for label in data.labels:
        interactions[label] = interactions[label].astype("float32")
    data.interactions = interactions
    data.items = _plain_strings(data.items)
    data.users = _plain_strings(data.users)
    return data


def _plain_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Positional index; text as Python-str object columns whichever reader (pandas 3 str dtype, Arrow) made it."""
    frame = frame.reset_index(drop=True)
    for column in frame.columns:
        if pd.api.types.is_string_dtype(frame[column].dtype) and frame[column].dtype != object:
            frame[column] = frame[column].astype(object)
    return frame
