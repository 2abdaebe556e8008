"""Export size with the real MiniLM: the BERT weights are stored once (Keras 3 objects stay out of the graph)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.toy import toy_config, toy_data
from tfmtl.config import TextEncoderConfig
from tfmtl.data.splits import split_interactions
from tfmtl.exporting import export
from tfmtl.features import FeatureSpace
from tfmtl.run import build_encoder, build_model
from tfmtl.training import TrainedRun


@pytest.mark.slow  # exports the real MiniLM model (most of a CPU-minute)
def test_a_minilm_export_is_at_most_1_1x_the_weights_it_reads(tmp_path) -> None:
    config = toy_config(encoder=TextEncoderConfig(preset="minilm-l6", sequence_length=16))
    data = toy_data()
    split = split_interactions(data, "tfrs")
    space = FeatureSpace.build(config.model, data, split.train)
    encoder = build_encoder(config.model, space)
    model = build_model(config.model, space, encoder)
    run = TrainedRun(tmp_path, config, model, data, dataclasses.replace(split), history=[], metrics={})
    result = export(run, name="minilm", base=tmp_path / "models")

    bert = sum(int(np.prod(v.shape)) * 4 for v in encoder.encoder_variables.values())
    size = sum(f.stat().st_size for f in result.path.rglob("*") if f.is_file())
    assert bert > 80 << 20  # the real 6-layer MiniLM is in there
    assert size <= 1.1 * bert, (size, bert)
    assert result.manifest["verification"]["size_ratio"] <= 1.1


def saved_size(folder, users: int, *, id_feature: bool) -> int:  # type: ignore[no-untyped-def]
    """Bytes of a `--user-snapshot none` export of the toy model whose user vocabulary has ``users`` ids."""
    import tensorflow as tf

    from tfmtl.exporting.module import build_serving_module

    config = toy_config()  # without text: no encoder to build, and nothing about text depends on the users
    config = toy_config(user_tower=dataclasses.replace(config.model.user_tower, id_feature=id_feature),
                        text_features=())
    data = toy_data()
    space = FeatureSpace.build(config.model, data, split_interactions(data, "tfrs").train)
    space.vocabularies["user_id"] = tuple(f"user{n}" for n in range(users))
    model = build_model(config.model, space, build_encoder(config.model, space, seed=0))
    module = build_serving_module(model, user_ids=np.zeros(0, dtype=object), user_columns={}, user_defaults={},
                                  item_defaults={}, max_k=10)
    path = folder / f"{users}-{id_feature}"
    folder.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(path), signatures=module.signatures())
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_without_a_snapshot_only_the_user_id_tables_grow_with_the_users(tmp_path) -> None:
    # The first model of a process gets shorter layer names (Keras numbers the later ones): not compared.
    saved_size(tmp_path / "first", 1_000, id_feature=False)
    # With the user-id feature off, nothing depends on the number of users: 1k and 1M export the same (to the
    # bytes of those layer-name suffixes).
    assert abs(saved_size(tmp_path, 1_000_000, id_feature=False) - saved_size(tmp_path, 1_000, id_feature=False)) \
        < 1024
    # With it on, the growth is the id tables: per user an 8-float embedding, a rating bias, and the id string
    # in the two lookups (the tower's and the bias's). (1M users: 77.9 MB against 2.2 MB, measured; too slow here.)
    small, large = saved_size(tmp_path, 1_000, id_feature=True), saved_size(tmp_path, 10_000, id_feature=True)
    per_user = (8 + 1) * 4 + 2 * (len("user9999") + 8)
    assert 9_000 * (8 + 1) * 4 < large - small < 9_000 * per_user * 1.1, (small, large)
