"""The warm reference beside the cold-start benchmark (benchmarks/cold_start_reference.py): how each new item's test
rows are cut in two, and which setting each cold variant is trained with again."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from tests.toy import toy_config, toy_data  # noqa: E402


def with_rated(items: list[str]):  # type: ignore[no-untyped-def]
    """The toy data with one interaction row per entry of ``items`` (row i rates items[i])."""
    data = toy_data()
    rows = pd.DataFrame({"user_id": [f"u{i}" for i in range(len(items))], "item_id": items,
                         "rating": 4.0, "timestamp": np.arange(len(items))})
    return dataclasses.replace(data, interactions=rows)


def test_each_item_gives_the_first_part_the_smaller_half_of_its_rows() -> None:
    from cold_start_reference import half_of_each_item

    # Rows 0-9: i1 rated 4 times, i2 3 times, i3 once, i4 twice; row 9 (i4) is not among the rows cut.
    data = with_rated(["i1", "i2", "i1", "i3", "i2", "i1", "i4", "i1", "i2", "i4"])
    rows = np.arange(9)
    first, second = half_of_each_item(data, rows, seed=0)
    items = data.interactions["item_id"].to_numpy()
    assert sorted(items[first]) == ["i1", "i1", "i2"]  # 4 // 2, 3 // 2, 1 // 2, and 1 // 2 of i4's one row here
    assert sorted(items[second]) == ["i1", "i1", "i2", "i2", "i3", "i4"]
    assert not set(first) & set(second) and sorted([*first, *second]) == list(rows)
    assert list(first) == sorted(first) and list(second) == sorted(second)
    again, _ = half_of_each_item(data, rows, seed=0)
    assert list(again) == list(first)  # the same seed cuts the same way
    draws = {tuple(half_of_each_item(data, rows, seed=s)[0]) for s in range(10)}
    assert len(draws) > 1  # and the cut is drawn, not the first rows of each item


def test_the_warm_split_trains_on_the_first_halves_and_judges_the_rest() -> None:
    from cold_start_reference import warm_split, warm_validation
    from quality import hold_out_items, validation_items

    data = toy_data()
    split, held_out = hold_out_items(data)
    warm = warm_split(data, split, seed=3)
    items = data.interactions["item_id"].astype(str).to_numpy()
    moved = np.setdiff1d(warm.train, split.train)
    assert set(split.train) <= set(warm.train) and not set(warm.train) & set(warm.test)
    assert sorted([*moved, *warm.test]) == sorted(split.test)
    assert set(items[moved]) <= held_out and set(items[warm.test]) <= held_out
    counts = pd.Series(items[split.test]).value_counts()
    assert pd.Series(items[moved]).value_counts().to_dict() == {i: n // 2 for i, n in counts.items() if n > 1}
    inner = validation_items(data, split, 0.2)
    checked = warm_validation(data, inner, seed=3)
    assert len(checked.test) == 0 and not set(checked.train) & set(checked.validation)
    assert sorted([*np.setdiff1d(checked.train, inner.train), *checked.validation]) == sorted(inner.validation)


def test_each_cold_variant_is_trained_again_with_its_reports_choice() -> None:
    from cold_start_reference import chosen_config

    report = {"search": {"item_id_dropout": [0.5, 0.9], "text_width": [32]},
              "variants": {"minilm_vector_ids": {"chosen": "item id dropout 0.5, vector width 32", "epochs": 7},
                           "no_text": {"chosen": "item id dropout 0.9", "epochs": 11}}}
    label, config = chosen_config(report, "minilm_vector_ids", toy_config())
    assert label == "item id dropout 0.5, vector width 32"
    assert config.model.item_tower.id_dropout == 0.5 and config.model.item_tower.text_dim == 32
    assert config.model.text_features == () and config.train.epochs == 7 and config.train.validation_fraction == 0.0
    _, config = chosen_config(report, "no_text", toy_config())
    assert config.model.item_tower.id_dropout == 0.9 and config.train.epochs == 11
