"""The paraphrase-minilm-l3 preset against paraphrase-MiniLM-L3-v2's own ONNX file run by onnxruntime
(fixtures/make_minilm_l3_reference.py).

The first run fetches the ONNX wheel from PyPI (~63 MB) and converts it into the tfmtl cache ($TFMTL_DATA_DIR, else
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

PRESET = "paraphrase-minilm-l3"


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads((Path(__file__).parent / "fixtures" / "minilm_l3_reference.json").read_text())


@pytest.fixture(scope="module")
def l3() -> TextEncoder:
    return packaged_encoder(PRESET, sequence_length=128, normalize=False)


def test_embeddings_match_onnxruntime(reference: dict, l3: TextEncoder) -> None:
    rows = reference["embeddings"]
    assert reference["sequence_length"] == 128 and any(len(row["ids"]) == 128 for row in rows)  # one truncated
    got = l3.embed([row["text"] for row in rows])
    expected = np.array([row["embedding"] for row in rows])
    assert got.shape == (len(rows), 384)
    assert cosines(got, expected).min() >= 0.99999, cosines(got, expected)
    assert np.abs(got - expected).max() < 1e-4, np.abs(got - expected).max()  # norms are ~4-5: not normalised
    assert np.linalg.norm(expected, axis=1).min() > 2


def test_token_ids_match_the_reference_tokenizer(reference: dict, l3: TextEncoder) -> None:
    rows = reference["embeddings"]
    tokens = l3.tokenize([row["text"] for row in rows])
    ids, mask = tokens["token_ids"].numpy(), tokens["padding_mask"].numpy()
    assert [row[m.astype(bool)].tolist() for row, m in zip(ids, mask, strict=True)] == [row["ids"] for row in rows]


def test_the_default_normalize_gives_the_same_directions_at_unit_length(reference: dict, l3: TextEncoder) -> None:
    rows = reference["embeddings"][:2]
    unit = TextEncoder.from_preset(PRESET, sequence_length=128).embed([row["text"] for row in rows])
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    assert cosines(unit, np.array([row["embedding"] for row in rows])).min() >= 0.99999
    assert l3.get_config()["encoder"]["preset"] == PRESET  # the name, not the cache path


def test_the_cached_folder_says_what_it_holds(l3: TextEncoder) -> None:
    from tfmtl.encoders.onnx_bert import paraphrase_minilm_l3_folder

    folder = paraphrase_minilm_l3_folder()  # cached by the fixture
    modules = json.loads((folder / "modules.json").read_text())
    assert not any("Normalize" in module["type"] for module in modules)
    assert "paraphrase-MiniLM-L3-v2 (Apache-2.0)" in (folder / "SOURCE.txt").read_text()
    config = json.loads((folder / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]) == (3, 384, 12)
