"""A tiny synthetic recommendation dataset with a planted structure, and a tiny model config for it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from tfmtl.config import Config, ModelConfig, RankingConfig, TextEncoderConfig, TowerConfig, TrainConfig
from tfmtl.data.interactions import InteractionData, finish
from tfmtl.data.schema import FeatureColumns

WORDS = {"a": ["space", "robot", "galaxy", "alien", "laser"], "b": ["love", "wedding", "paris", "kiss", "heart"]}


def toy_data(num_users: int = 40, num_items: int = 30, per_user: int = 15, seed: int = 0) -> InteractionData:
    """Users of group a like items of group a (ratings 4-5) and dislike the others (1-2); titles say the group."""
    rng = np.random.default_rng(seed)
    item_group = np.array(["a" if i % 2 == 0 else "b" for i in range(num_items)])
    items = pd.DataFrame({
        "item_id": [f"i{i}" for i in range(num_items)],
        "title": [" ".join(rng.choice(WORDS[g], 3)) + f" {i}" for i, g in enumerate(item_group)],
        "year": [str(1990 + i % 4) for i in range(num_items)],
        "genres": [("scifi",) if g == "a" else ("romance", "drama") for g in item_group],
    })
    user_group = np.array(["a" if u % 2 == 0 else "b" for u in range(num_users)])
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(num_users)],
                          "gender": ["M" if u % 3 else "F" for u in range(num_users)],
                          "age": rng.integers(18, 60, num_users).astype(float)})
    rows = []
    for u in range(num_users):
        liked = np.flatnonzero(item_group == user_group[u])
        other = np.flatnonzero(item_group != user_group[u])
        chosen = np.r_[rng.choice(liked, per_user - 3, replace=False), rng.choice(other, 3, replace=False)]
        for n, i in enumerate(rng.permutation(chosen)):
            rating = float(rng.integers(4, 6) if item_group[i] == user_group[u] else rng.integers(1, 3))
            rows.append((f"u{u}", f"i{i}", rating, 1_000_000 + 100 * n + u))
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    return finish(InteractionData(
        name="toy", interactions=interactions, items=items, users=users, labels=("rating",),
        item_features=FeatureColumns(text=("title",), categorical=("year",), multi_valued=("genres",)),
        user_features=FeatureColumns(categorical=("gender",), numeric=("age",))))


def toy_config(**model: object) -> Config:
    """A model small enough to train in seconds: tiny BERT (hidden 8), D=8, H=5."""
    tower = TowerConfig(id_dim=8, feature_dim=4, text_dim=4, hidden_units=(16,), dropout=0.0, numeric_buckets=3)
    encoder = TextEncoderConfig(preset="tiny", sequence_length=8, tiny_vocabulary_size=60, tiny_hidden_dim=8,
                                tiny_num_layers=1, tiny_num_heads=2, tiny_intermediate_dim=16)
    settings: dict[str, object] = dict(embedding_dim=8, history_length=5, encoder=encoder, user_tower=tower,
                                       item_tower=tower, ranking=RankingConfig(hidden_units=(16,), head_units=(8,),
                                                                               expert_units=(8,), dropout=0.0))
    settings.update(model)
    train = TrainConfig(dataset="toy", epochs=2, batch_size=64, validation_fraction=0.1, patience=0,
                        eval_batch_size=256, learning_rate=0.01)
    return Config(model=ModelConfig(**settings), train=train)  # type: ignore[arg-type]


def untrained_toy_model(num_users: int = 60, num_items: int = 40,  # type: ignore[no-untyped-def]
                        config: Config | None = None):
    """The toy data, its split and feature space, and a freshly built (untrained) model over them (``config``'s,
    else :func:`toy_config`'s)."""
    from tfmtl.features import FeatureSpace
    from tfmtl.run import build_encoder, build_model
    from tfmtl.training import make_split

    data = toy_data(num_users=num_users, num_items=num_items)
    config = config or toy_config()
    split = make_split(data, config)
    space = FeatureSpace.build(config.model, data, split.train)
    return data, split, space, build_model(config.model, space, build_encoder(config.model, space, seed=0))


def with_user_bios(data: InteractionData) -> InteractionData:
    """The toy users with a text column, ``bio``, that says their group in the titles' words."""
    bios = [" ".join(WORDS["a" if u % 2 == 0 else "b"][:2]) + f" fan {u % 4}" for u in range(len(data.users))]
    return dataclasses.replace(data, users=data.users.assign(bio=bios),
                               user_features=dataclasses.replace(data.user_features, text=("bio",)))


def write_toy_schema(folder: Path, data: InteractionData | None = None) -> Path:
    """The toy dataset as CSV files plus a schema, the way a user brings their own data."""
    data = data if data is not None else toy_data()
    data.interactions.to_csv(folder / "ratings.csv", index=False)
    items = data.items.assign(genres=data.items["genres"].map("|".join))
    items.to_csv(folder / "items.csv", index=False)
    data.users.to_csv(folder / "users.csv", index=False)
    schema = {
        "name": "toy",
        "interactions": {"path": "ratings.csv", "user_id": "user_id", "item_id": "item_id",
                         "labels": {"rating": "rating"}, "timestamp": "timestamp", "timestamp_format": "unix"},
        "items": {"path": "items.csv", "item_id": "item_id", "text": ["title"], "categorical": ["year"],
                  "multi_valued": {"genres": "|"}},
        "users": {"path": "users.csv", "user_id": "user_id", "categorical": ["gender"], "numeric": ["age"],
                  **({"text": list(data.user_features.text)} if data.user_features.text else {})},
    }
    (folder / "schema.json").write_text(json.dumps(schema))
    return folder / "schema.json"
