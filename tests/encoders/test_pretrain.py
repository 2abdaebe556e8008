"""Masked-LM pretraining: the head and loss by hand, BERT's masking rules, and ``pretrain`` end to end on a tiny
preset (adaptation beats the head alone on held-out texts; the saved preset reloads to the same outputs)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from tests.encoders.conftest import TITLES
from tests.encoders.tiny_presets import write_preset
from tfmtl.encoders import TextEncoder
from tfmtl.encoders.pretrain import MaskedLMHead, PretrainConfig, mask_tokens, masked_lm_loss, pretrain


def test_head_and_loss_equal_a_hand_computation() -> None:
    """Hidden [1, 2, 2] at two masked slots (the second with weight 0), vocabulary 3: dense + exact GELU + layer
    norm, then the tied table transposed plus a bias, then the weighted mean cross-entropy."""
    table = tf.Variable([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    head = MaskedLMHead(table)
    hidden = np.array([[[0.5, -1.0], [2.0, 0.0]]], np.float32)
    head(hidden)  # builds
    assert sorted(v.name.split("/")[-1] for v in head.trainable_weights) == [  # the encoder owns the table
        "beta:0", "bias:0", "gamma:0", "kernel:0", "output_bias:0"]
    kernel, bias = np.array([[1.0, 2.0], [0.0, 1.0]]), np.array([0.1, -0.2])
    head.dense.set_weights([kernel, bias])
    head.layer_norm.set_weights([np.array([1.5, 0.5]), np.array([0.0, 0.25])])
    head.bias.assign([0.0, 0.3, -0.1])
    targets, weights = np.array([[2, 0]]), np.array([[1.0, 0.0]])

    def gelu(x: float) -> float:
        return 0.5 * x * (1 + math.erf(x / math.sqrt(2)))

    x = hidden[0, 0] @ kernel + bias  # [0.6, 0.8]
    x = np.array([gelu(v) for v in x])
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-12) * np.array([1.5, 0.5]) + np.array([0.0, 0.25])
    logits = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]) @ x + np.array([0.0, 0.3, -0.1])
    want = -(logits[2] - np.log(np.exp(logits).sum()))
    got = float(masked_lm_loss(head(hidden), tf.constant(targets), tf.constant(weights, tf.float32)))
    assert got == pytest.approx(want, rel=1e-5)


def test_masking_follows_berts_rules() -> None:
    rng = np.random.default_rng(0)
    rows, length, pad, start, end, mask_id, vocabulary = 400, 40, 0, 2, 3, 4, 50
    lengths = rng.integers(3, length + 1, rows)
    ids = rng.integers(5, vocabulary, (rows, length))
    ids[:, 0] = start
    ids[np.arange(rows), lengths - 1] = end
    ids[np.arange(length)[None, :] >= lengths[:, None]] = pad
    tokens = {"token_ids": tf.constant(ids, tf.int32), "segment_ids": tf.zeros((rows, length), tf.int32),
              "padding_mask": tf.constant(ids != pad, tf.int32)}
    masked = mask_tokens(tokens, special_ids=(pad, start, end), mask_id=mask_id, vocabulary_size=vocabulary,
                         seed=tf.constant([1, 2], tf.int64))
    positions, weights = masked.positions.numpy(), masked.weights.numpy()
    chosen = [positions[r][weights[r] > 0] for r in range(rows)]
    maskable = lengths - 2
    assert [len(c) for c in chosen] == [max(1, round(0.15 * m)) for m in maskable]
    assert all(((c > 0) & (c < lengths[r] - 1)).all() and len(set(c)) == len(c) for r, c in enumerate(chosen))
    np.testing.assert_array_equal(masked.targets.numpy(), np.take_along_axis(ids, positions, axis=1))
    new = masked.tokens["token_ids"].numpy()
    replaced = np.concatenate([new[r, c] for r, c in enumerate(chosen)])
    original = np.concatenate([ids[r, c] for r, c in enumerate(chosen)])
    assert (replaced == mask_id).mean() == pytest.approx(0.8, abs=0.05)
    assert (replaced == original).mean() == pytest.approx(0.1 + 0.1 / vocabulary, abs=0.04)
    unchosen = np.ones_like(ids, bool)
    for r, c in enumerate(chosen):
        unchosen[r, c] = False
    np.testing.assert_array_equal(new[unchosen], ids[unchosen])
    again = mask_tokens(tokens, special_ids=(pad, start, end), mask_id=mask_id, vocabulary_size=vocabulary,
                        seed=tf.constant([1, 2], tf.int64))
    np.testing.assert_array_equal(again.tokens["token_ids"].numpy(), new)


def test_pretrain_adapts_saves_a_preset_that_reloads_and_refuses_to_overwrite(tmp_path) -> None:
    """Texts with a strong pattern (each title's words come in fixed triples) on a tiny random DistilBERT: adapting
    the encoder beats the head alone on held-out texts; the preset reloads to the adapted outputs."""
    words = sorted({w for title in TITLES for w in title.split()})
    preset = write_preset("distil_bert", tmp_path / "source", words)
    rng = np.random.default_rng(0)
    texts = [" ".join(words[(k + j) % len(words)] for j in range(3)) + " " + " ".join(rng.choice(words, 2))
             for k in range(len(words)) for _ in range(4)]
    texts = [f"{t} {i % 7}" for i, t in enumerate(texts)]
    config = PretrainConfig(encoder=TextEncoder.from_preset(str(preset)).config.__class__(
        preset=str(preset), sequence_length=12, trainable_layers=-1, dropout=0.0), epochs=2, batch_size=16,
        learning_rate=3e-3, head_learning_rate=3e-3)
    report = pretrain(texts, config, tmp_path / "out", progress=False)
    assert report["adapted"]["held_out_loss"][-1] < report["unadapted"]["held_out_loss"][-1]
    assert report["adapted"]["steps"] == report["unadapted"]["steps"] == 2 * math.ceil(
        report["texts"]["train"] / 16)
    assert json.loads((tmp_path / "out" / "pretrain.json").read_text())["preset"] == report["preset"]

    reloaded = TextEncoder.from_preset(report["preset"], sequence_length=12)
    source = TextEncoder.from_preset(str(preset), sequence_length=12)
    sample = texts[:4]
    assert not np.allclose(reloaded.embed(sample), source.embed(sample), atol=1e-4)  # it did adapt
    adapted = TextEncoder.from_preset(str(preset), sequence_length=12, trainable_layers=-1)
    tf.train.Checkpoint(encoder=adapted).read(
        tf.train.latest_checkpoint(str(tmp_path / "out" / "checkpoints"))).expect_partial()
    np.testing.assert_allclose(reloaded.embed(sample), adapted.embed(sample), atol=1e-5)
    with pytest.raises(ValueError, match="--resume"):
        pretrain(texts, config, tmp_path / "out", progress=False)


def test_the_mlm_task_adds_the_masked_lm_loss_of_the_steps_catalog_texts_to_the_multi_task_loss() -> None:
    """The model's ``mlm`` loss at step 0 equals one computed here: its first ``items_per_step`` texts of the
    catalog shuffle, masked with seed [0, 0], the backbone run whole by keras-hub, and the head in numpy."""
    import dataclasses

    from tests.toy import toy_config, toy_data
    from tfmtl.evaluate import evaluate_model
    from tfmtl.features import FeatureSpace
    from tfmtl.run import build_encoder, build_model
    from tfmtl.training import make_split

    with pytest.raises(ValueError, match="trainable_layers"):
        toy_config(tasks={"retrieval": 1.0, "mlm": {"type": "mlm", "weight": 0.5}})  # toy encoder: frozen
    config = toy_config(tasks={"retrieval": 1.0, "mlm": {"type": "mlm", "weight": 0.5, "items_per_step": 6}},
                        encoder=dataclasses.replace(toy_config().model.encoder, trainable_layers=1))
    data = toy_data()
    split = make_split(data, config)
    space = FeatureSpace.build(config.model, data, split.train)
    model = build_model(config.model, space, build_encoder(config.model, space, seed=0))
    got = float(model._item_task_losses(training=False)["mlm"])

    order = model._mlm_order.numpy()[:6]
    texts = model._catalog_rows(tf.constant(order))["title"].numpy()
    summed, weight = _numpy_mlm_loss(model, texts, [0, 0])
    assert got == pytest.approx(summed / weight, rel=1e-4)
    # Held out (evaluation, pretraining): a mean over every masked token of all the batches, batch i masked with
    # the seed (offset + i, seed).
    parts = [_numpy_mlm_loss(model, texts[i:i + 4], [7 + i, 3]) for i in (0, 4)]
    assert model.masked_lm.held_out_loss(texts, batch_size=4, seed=3, offset=7) == pytest.approx(
        sum(p[0] for p in parts) / sum(p[1] for p in parts), rel=1e-4)
    metrics = evaluate_model(model, data, split.train, split.test, ks=(5,))
    assert np.isfinite(metrics["mlm/loss"]) and metrics["mlm/loss"] > 0


def _numpy_mlm_loss(model, texts: np.ndarray, seed: list[int]) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(summed cross-entropy, masked tokens) of ``texts`` masked with ``seed``: the backbone run whole by keras-hub,
    the head in numpy."""
    masked = model.masked_lm.mask(tf.constant(texts), tf.constant(seed, tf.int64))
    encoder = model.masked_lm.encoder
    sequence = np.asarray(encoder._keras3.backbone({k: masked.tokens[k] for k in
                                                    ("token_ids", "segment_ids", "padding_mask")})["sequence_output"])
    hidden = np.take_along_axis(sequence, masked.positions.numpy()[:, :, None], axis=1)
    kernel, bias = (w.numpy() for w in model.masked_lm.head.dense.weights)
    gamma, beta = (w.numpy() for w in model.masked_lm.head.layer_norm.weights)
    x = hidden @ kernel + bias
    x = 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-12) * gamma + beta
    logits = x @ encoder.token_embeddings.numpy().T + model.masked_lm.head.bias.numpy()
    logits = logits - logits.max(-1, keepdims=True)
    log_probability = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    chosen = np.take_along_axis(log_probability, masked.targets.numpy()[:, :, None], axis=-1)[..., 0]
    weights = masked.weights.numpy()
    return float(-(chosen * weights).sum()), float(weights.sum())
