"""Data: loaders (MovieLens, your own tables), validation, splits, vocabularies and tf.data pipelines."""

from __future__ import annotations

from pathlib import Path

from tfmtl.data.errors import DataError, SkipReport
from tfmtl.data.interactions import ITEM_ID, TIMESTAMP, USER_ID, InteractionData, load_from_schema
from tfmtl.data.movielens import RELEASES, load_movielens
from tfmtl.data.overviews import NAME as OVERVIEWS_NAME
from tfmtl.data.overviews import load_ml1m_overviews
from tfmtl.data.pipeline import (
    build_vocabularies,
    feature_arrays,
    interaction_dataset,
    item_dataset,
    make_dataset,
    multi_valued_widths,
)
from tfmtl.data.schema import FeatureColumns, Schema
from tfmtl.data.splits import (
    Split,
    hold_out_last,
    hold_out_validation,
    leave_last_n_split,
    split_interactions,
    tfrs_tutorial_split,
    time_cutoff_split,
)
from tfmtl.data.vocab import Vocabulary

# The datasets known by name (each downloaded at run time); anything else must be a schema file.
DATASET_NAMES = (*RELEASES, OVERVIEWS_NAME)


def load_dataset(name_or_schema: str | Path, **options: object) -> InteractionData:
    """``ml-100k`` / ``ml-1m`` / ``ml-1m-overviews`` by name, or the path of a schema file describing your own
    tables."""
    if str(name_or_schema) in RELEASES:
        return load_movielens(str(name_or_schema), **options)  # type: ignore[arg-type]
    if str(name_or_schema) == OVERVIEWS_NAME:
        return load_ml1m_overviews(**options)  # type: ignore[arg-type]
    path = Path(name_or_schema)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.exists():
        return load_from_schema(Schema.from_file(path))
    raise ValueError(f"unknown dataset {str(name_or_schema)!r}: expected one of {', '.join(DATASET_NAMES)} "
                     "or the path of a schema file (.yaml, .yml or .json)")


__all__ = [
    "DataError", "SkipReport", "InteractionData", "FeatureColumns", "Schema", "Split", "Vocabulary",
    "ITEM_ID", "USER_ID", "TIMESTAMP", "DATASET_NAMES", "load_dataset", "load_movielens", "load_ml1m_overviews",
    "load_from_schema",
    "split_interactions", "tfrs_tutorial_split", "time_cutoff_split", "leave_last_n_split",
    "hold_out_validation", "hold_out_last", "build_vocabularies", "feature_arrays", "make_dataset",
    "interaction_dataset", "item_dataset", "multi_valued_widths",
]
