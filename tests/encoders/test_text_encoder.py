"""The Keras 2/3 seam on the tiny fixture: training, the training flag, losses, checkpoints, config, export."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tests.conftest import run_python
from tests.encoders.conftest import TITLES, tiny_encoder
from tfmtl.config import TextEncoderConfig
from tfmtl.encoders import TextEncoder
from tfmtl.exporting import save_text_embedder


class TitleRetrieval(tfrs.Model):
    """Retrieval of a title from a title: enough to send TFRS gradients through the encoder."""

    def __init__(self, encoder: TextEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.query = tf.keras.layers.Dense(encoder.output_dim)
        self.task = tfrs.tasks.Retrieval()

    def compute_loss(self, features: dict, training: bool = False) -> tf.Tensor:
        items = self.encoder(features["title"], training=training)
        return self.task(self.query(items), items, compute_metrics=False) + sum(self.losses)


def one_step(encoder: TextEncoder) -> dict[str, np.ndarray]:
    """Encoder variables before a training step (name -> value); the step runs through tf-keras fit."""
    model = TitleRetrieval(encoder)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.05))
    data = tf.data.Dataset.from_tensor_slices({"title": TITLES[:8]}).batch(8)
    model.compute_loss(next(iter(data)))  # builds the layers
    before = {key: v.numpy().copy() for key, v in encoder.encoder_variables.items()}
    model.fit(data, epochs=1, verbose=0)
    return before


def changed(encoder: TextEncoder, before: dict[str, np.ndarray]) -> set[str]:
    return {key for key, v in encoder.encoder_variables.items() if not np.array_equal(v.numpy(), before[key])}


def test_top_layer_mode_trains_exactly_the_top_layer() -> None:
    encoder = tiny_encoder(trainable_layers=1)
    before = one_step(encoder)
    top = {key for key in before if "transformer_layer_1" in key}
    assert top and changed(encoder, before) == top


def test_full_mode_trains_everything_but_the_unused_pooler() -> None:
    encoder = tiny_encoder(trainable_layers=-1)
    before = one_step(encoder)
    expected = {key for key in before if "pooled_dense" not in key}
    assert changed(encoder, before) == expected


def test_frozen_mode_trains_nothing_in_the_encoder() -> None:
    encoder = tiny_encoder(trainable_layers=0, projection_dim=4)
    encoder(tf.constant(["toy story"]))  # builds the projection
    projection_before = [w.numpy().copy() for w in encoder.projection.weights]
    before = one_step(encoder)
    assert changed(encoder, before) == set()
    assert all(not np.array_equal(w.numpy(), b) for w, b in zip(encoder.projection.weights, projection_before,
                                                                  strict=True))


def test_training_flag_reaches_the_encoder() -> None:
    encoder = tiny_encoder(trainable_layers=-1, dropout=0.5)
    texts = tf.constant(TITLES[:4])
    outer = tf.keras.Sequential([encoder])  # the flag must cross a tf-keras parent too
    assert np.array_equal(outer(texts, training=False).numpy(), outer(texts, training=False).numpy())
    assert not np.allclose(outer(texts, training=True).numpy(), outer(texts, training=True).numpy())


def test_backbone_regularisation_losses_count() -> None:
    import keras  # Keras 3: the backbone's own regulariser type
    encoder = tiny_encoder(trainable_layers=-1)
    backbone = encoder._keras3.backbone
    table = backbone.token_embedding.embeddings
    table.regularizer = keras.regularizers.L2(0.5)  # 0.5 * sum(v^2); Keras before 3.15 takes no plain callable
    encoder(tf.constant(["toy story"]))
    expected = 0.5 * float(np.square(table.numpy()).sum())
    assert any(abs(float(loss) - expected) < 1e-4 * expected for loss in encoder.losses)


def test_checkpoint_round_trip_restores_outputs(tmp_path) -> None:
    texts = tf.constant(TITLES[:5])
    trained = tiny_encoder(seed=1, projection_dim=4)
    one_step(trained)
    expected = trained(texts).numpy()
    path = tf.train.Checkpoint(encoder=trained).save(str(tmp_path / "ckpt"))

    fresh = TextEncoder.from_config(json.loads(json.dumps(trained.get_config())))
    fresh(texts)  # build the projection
    assert not np.allclose(fresh(texts).numpy(), expected)  # otherwise the test could not fail
    status = tf.train.Checkpoint(encoder=fresh).restore(path)
    status.assert_existing_objects_matched()
    np.testing.assert_array_equal(fresh(texts).numpy(), expected)


def test_config_round_trips_through_json() -> None:
    encoder = tiny_encoder()
    config = json.loads(json.dumps(encoder.get_config()))
    rebuilt = TextEncoder.from_config(config)
    assert rebuilt.get_config() == encoder.get_config()
    assert TextEncoderConfig.from_config(config["encoder"]) == encoder.config


@pytest.mark.parametrize("field,value", [("sequence_length", 1), ("pooling", "max"), ("trainable_layers", -2),
                                         ("truncate", "head"), ("dropout", 1.0)])
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"'encoder.{field}'"):
        TextEncoderConfig(**{field: value})


def test_tiny_needs_texts() -> None:
    with pytest.raises(ValueError, match="pass texts"):
        TextEncoder.from_preset("tiny")


def test_unknown_preset_says_what_works_offline() -> None:
    with pytest.raises(ValueError, match="minilm-l6"):
        TextEncoder.from_preset("/nonexistent/preset/folder")


def test_cls_pooling_without_normalisation_returns_the_cls_vector() -> None:
    encoder = tiny_encoder(pooling="cls", normalize=False)
    tokens = encoder.tokenize(["toy story"])
    sequence = encoder._keras3.backbone(tokens)["sequence_output"].numpy()
    np.testing.assert_allclose(encoder(tokens).numpy(), sequence[:, 0, :], rtol=1e-6)


@pytest.mark.parametrize("preset", ["roberta", "minilm-l6"])
def test_saved_text_embedder_loads_with_tf2_and_tf1_loaders(preset: str, tmp_path) -> None:
    """MiniLM (WordPiece: its vocabulary lives in the op) and a tiny random RoBERTa (byte-level BPE: lookup tables
    and a word cache, which the encoder must hand to the SavedModel)."""
    if preset == "roberta":
        from tests.encoders.test_other_architectures import WORDS
        from tests.encoders.tiny_presets import write_preset

        encoder = TextEncoder.from_preset(str(write_preset("roberta", tmp_path / "roberta", WORDS)),
                                          sequence_length=16)
    else:
        encoder = TextEncoder.from_preset("minilm-l6", sequence_length=32)
    texts = ["Café au lait", "toy story", ""]
    expected = encoder.embed(texts)
    path = save_text_embedder(encoder, tmp_path / "model")
    result = run_python(
        "import json, sys, numpy as np, tensorflow as tf, tensorflow_text\n"
        f"texts = {texts!r}\n"
        f"module = tf.saved_model.load({str(path)!r})\n"
        "tf2 = module.signatures['embed_text'](text=tf.constant(texts))['text_embedding'].numpy()\n"
        "with tf.compat.v1.Session(graph=tf.Graph()) as session:\n"
        f"    meta = tf.compat.v1.saved_model.loader.load(session, ['serve'], {str(path)!r})\n"
        "    signature = meta.signature_def['serving_default']\n"
        "    tf1 = session.run(signature.outputs['text_embedding'].name, {signature.inputs['text'].name: texts})\n"
        "print(json.dumps({'tf2': tf2.tolist(), 'tf1': tf1.tolist()}))\n")
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(np.array(loaded["tf2"]), expected, atol=1e-6)
    np.testing.assert_allclose(np.array(loaded["tf1"]), expected, atol=1e-6)
    if preset == "minilm-l6":  # the Keras 3 model is not stored a second time
        size = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
        weights = sum(v.numpy().nbytes for v in encoder.weights)
        assert size <= 1.1 * weights, (size, weights)


def saved_ops(path) -> set[str]:
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((path / "saved_model.pb").read_bytes())
    graph = saved.meta_graphs[0].graph_def
    return {node.op for node in graph.node} | {node.op for f in graph.library.function for node in f.node_def}


@pytest.mark.parametrize("truncate,has_trimmer", [("round_robin", True), ("waterfall", False)])
def test_waterfall_exports_avoid_the_trimmer_op_older_tf_serving_lacks(truncate: str, has_trimmer: bool,
                                                                      tmp_path) -> None:
    path = save_text_embedder(tiny_encoder(truncate=truncate), tmp_path / truncate)
    ops = saved_ops(path)
    assert "FastWordpieceTokenizeWithOffsets" in ops  # the in-graph tokenizer is really there
    assert any("RoundRobinTrim" in op for op in ops) == has_trimmer
