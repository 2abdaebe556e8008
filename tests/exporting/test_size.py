"""Export size with the real MiniLM: the BERT weights are stored once (Keras 3 objects stay out of the graph)."""

from __future__ import annotations

import dataclasses

import numpy as np

from tests.toy import toy_config, toy_data
from tfmtl.config import TextEncoderConfig
from tfmtl.data.splits import split_interactions
from tfmtl.exporting import export
from tfmtl.features import FeatureSpace
from tfmtl.run import build_encoder, build_model
from tfmtl.training import TrainedRun


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
