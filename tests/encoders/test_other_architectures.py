"""Text backbones beyond BERT: keras-hub DistilBERT, RoBERTa (byte-level BPE) and GPT-2 presets, tiny and random,
checked against the backbone run whole by keras-hub with the pooling done here by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tests.encoders.conftest import TITLES
from tests.encoders.tiny_presets import write_preset
from tfmtl.encoders import TextEncoder

WORDS = sorted({word for title in TITLES for word in title.split()})


@pytest.fixture(scope="module")
def presets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("presets")
    return {name: str(write_preset(name, root / name, WORDS)) for name in ("distil_bert", "roberta", "gpt2")}


def reference_embedding(encoder: TextEncoder, tokens: dict[str, tf.Tensor]) -> np.ndarray:
    """keras-hub's backbone called whole on its own inputs, mean-pooled over the mask and L2-normalised in numpy."""
    backbone = encoder._keras3.backbone
    sequence = backbone({"token_ids": tokens["token_ids"], "padding_mask": tokens["padding_mask"]})
    sequence = np.asarray(sequence)
    mask = tokens["padding_mask"].numpy()[:, :, None].astype(np.float32)
    pooled = (sequence * mask).sum(axis=1) / mask.sum(axis=1)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


@pytest.mark.parametrize("architecture,trainable_layers", [("distil_bert", 0), ("distil_bert", 1),
                                                            ("distil_bert", -1), ("roberta", 1), ("gpt2", 0)])
def test_other_backbones_embed_as_the_backbone_run_whole(presets, architecture: str,
                                                         trainable_layers: int) -> None:
    """Split into a frozen stage and trainable top layers (0, 1), or run whole (-1; GPT-2 always)."""
    encoder = TextEncoder.from_preset(presets[architecture], sequence_length=12, trainable_layers=trainable_layers)
    texts = ["toy story", "the usual suspects seven babe", "x"]
    tokens = encoder.tokenize(texts)
    got = encoder(tokens, training=False).numpy()
    np.testing.assert_allclose(got, reference_embedding(encoder, tokens), atol=1e-5)
    np.testing.assert_allclose(encoder.embed(texts), got, atol=1e-6)


@pytest.mark.parametrize("architecture", ["distil_bert", "roberta"])
def test_tokens_are_the_presets_own_wrapped_in_its_start_and_end(presets, architecture: str) -> None:
    import keras_hub

    encoder = TextEncoder.from_preset(presets[architecture], sequence_length=8)
    own = keras_hub.models.Tokenizer.from_preset(presets[architecture])
    for text in ["toy story", "dead man walking richard iii seven"]:
        ids = [int(i) for i in np.asarray(own(text))][:8 - 2]
        want = [own.start_token_id, *ids, own.end_token_id]
        tokens = encoder.tokenize([text])
        assert tokens["token_ids"].numpy()[0, :len(want)].tolist() == want
        assert tokens["padding_mask"].numpy()[0].tolist() == [1] * len(want) + [0] * (8 - len(want))
        assert not tokens["segment_ids"].numpy().any()


def test_top_layer_mode_trains_exactly_the_top_layer_of_a_roberta(presets) -> None:
    encoder = TextEncoder.from_preset(presets["roberta"], sequence_length=8, trainable_layers=1)
    names = [v.name for v in encoder.trainable_weights]
    assert names and all("transformer_layer_1" in name for name in names)
    assert encoder.frozen_layers == 1


def test_unusable_architectures_get_an_error_naming_them(presets, tmp_path) -> None:
    with pytest.raises(ValueError, match="GPT2Backbone.*trainable_layers|trainable_layers.*GPT2Backbone"):
        TextEncoder.from_preset(presets["gpt2"], sequence_length=8, trainable_layers=1)
    bare = write_preset("distil_bert", tmp_path / "bare", WORDS, with_tokenizer=False)
    with pytest.raises(ValueError, match="DistilBertBackbone.*no tokenizer"):
        TextEncoder.from_preset(str(bare), sequence_length=8)


@pytest.mark.slow  # a training and a fresh-process export verification (about a CPU-minute); the embedding tests
# above and the RoBERTa embedder through both loaders (test_text_encoder.py) cover these backbones in the fast suite
def test_a_distilbert_trains_in_the_model_and_exports_through_the_tf1_loader_verification(presets,
                                                                                         tmp_path) -> None:
    """The whole path with a backbone that is not a BertBackbone (no segment embeddings): training moves the top
    layer; the export's verification (a fresh process, the TF1 session loader as TF Serving loads and TF2, every
    signature compared, the op check) passes, and the served item embedding of a new title equals the training
    model's. (Byte-level BPE's tables in a SavedModel: test_text_encoder's text-embedder export.)"""
    from tests.toy import toy_config, toy_data
    from tfmtl.config import ExportConfig
    from tfmtl.exporting import export
    from tfmtl.training import train

    config = toy_config(history_pooling="mean")
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, encoder=dataclasses.replace(
        config.model.encoder, preset=presets["distil_bert"], trainable_layers=1)),
        train=dataclasses.replace(config.train, epochs=1))
    before = TextEncoder.from_preset(presets["distil_bert"], sequence_length=8, trainable_layers=1)
    run = train(config, output=tmp_path / "run", data=toy_data(), progress=False)
    encoder = run.model.item_tower.features["title"].encoder
    trained = {key: v.numpy() for key, v in encoder.encoder_variables.items()}
    moved = {key for key, v in before.encoder_variables.items() if not np.allclose(v.numpy(), trained[key])}
    assert moved and all("transformer_layer_1" in key for key in moved)

    exported = export(run, name="distilbert", base=tmp_path / "saved_models", config=ExportConfig(verify=True))
    assert len(exported.manifest["verification"]["loaders"]) == 2, exported.manifest["verification"]
    request = {"item_id": np.array(["never-seen"], dtype=object), "year": np.array(["1991"], dtype=object),
               "title": np.array(["galaxy wedding 99"], dtype=object),
               "genres": np.array([["scifi"]], dtype=object)}
    served = tf.saved_model.load(str(exported.path)).signatures["item_embedding"](
        **{k: tf.constant(v) for k, v in request.items()})["item_embedding"].numpy()
    np.testing.assert_allclose(served, run.model.embed_item(
        {k: tf.constant(v) for k, v in request.items()}).numpy(), atol=1e-5)


def test_byte_pair_tokens_equal_keras_hubs_and_its_word_cache_never_grows(presets) -> None:
    """keras-hub's in-graph BPE caches every new word in a table no one empties; the encoder runs the same steps
    without it (a server's memory must not grow with the words it is sent), with the same ids."""
    import keras_hub

    encoder = TextEncoder.from_preset(presets["roberta"], sequence_length=32)
    own = keras_hub.models.Tokenizer.from_preset(presets["roberta"])
    texts = ["toy story", "", "  the usual   suspects!! 12 ", "<mask> seven <s>", "dead man walking richard iii"]
    graph = tf.function(lambda x: own(x).to_tensor(default_value=-7))  # keras-hub's graph path, as served
    reference = graph(tf.constant(texts)).numpy()
    tokens = encoder.tokenize(texts)["token_ids"].numpy()
    for row, text in enumerate(texts):
        ids = [int(i) for i in reference[row] if i != -7][:30]
        want = [own.start_token_id, *ids, own.end_token_id]
        assert tokens[row, :len(want)].tolist() == want, text
    cache = encoder._keras3.tokenizer.cache.id2value
    before = int(cache.size())
    encoder.tokenize([f"zebra quokka {i} {'x' * (i % 7)}" for i in range(40)])
    assert int(cache.size()) == before
