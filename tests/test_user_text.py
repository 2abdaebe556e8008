"""User text columns (a profile, tags): read by the item tower's text encoder in the user tower. Training, export and
serving with a bio: tests/exporting/test_export.py."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.toy import toy_config, toy_data, with_user_bios
from tfmtl.features import FeatureSpace
from tfmtl.run import build_encoder, build_model
from tfmtl.towers import TextFeature
from tfmtl.training import make_split


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return with_user_bios(toy_data())


@pytest.fixture(scope="module")
def model(data):  # type: ignore[no-untyped-def]
    config = toy_config()
    split = make_split(data, config)
    space = FeatureSpace.build(config.model, data, split.train)
    return build_model(config.model, space, build_encoder(config.model, space, seed=0))


def _users(data, bios: list[str]) -> dict[str, tf.Tensor]:  # type: ignore[no-untyped-def]
    rows = data.users.iloc[: len(bios)]
    return {"user_id": tf.constant(rows["user_id"].to_numpy(dtype=object)),
            "gender": tf.constant(rows["gender"].to_numpy(dtype=object)),
            "age": tf.constant(rows["age"].to_numpy(np.float32)), "bio": tf.constant(bios),
            "history": tf.constant(np.full((len(bios), 5), "", dtype=object))}


def test_the_user_tower_reads_the_bio_through_the_item_towers_encoder(data, model) -> None:  # type: ignore[no-untyped-def]
    bio = model.user_tower.features["bio"]
    assert isinstance(bio, TextFeature)
    assert bio.encoder is model.item_tower.features["title"].encoder  # one encoder, both towers
    known, new = list(data.users["bio"][:3]), "alien laser kiss paris"
    assert new not in set(data.users["bio"])
    # Cached (the user table's texts) or not, the feature is the encoder's output on the text.
    direct = bio.encoder(tf.constant([*known, new]), training=False).numpy()
    np.testing.assert_allclose(bio.encode(tf.constant([*known, new])).numpy(), direct, atol=1e-6)


def test_a_users_bio_moves_that_users_embedding_and_no_other(data, model) -> None:  # type: ignore[no-untyped-def]
    bios = list(data.users["bio"][:4])
    before = model.embed_user(_users(data, bios)).numpy()
    after = model.embed_user(_users(data, [*bios[:3], "alien laser kiss paris"])).numpy()
    np.testing.assert_array_equal(after[:3], before[:3])
    assert np.abs(after[3] - before[3]).max() > 1e-4
