"""The minilm-l6 preset against all-MiniLM-L6-v2 computed independently (fixtures/make_minilm_reference.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tfmtl.encoders import TextEncoder
from tfmtl.encoders import text as text_module


def real_ids(encoder: TextEncoder, texts: list[str]) -> list[list[int]]:
    tokens = encoder.tokenize(texts)
    ids, mask = tokens["token_ids"].numpy(), tokens["padding_mask"].numpy()
    return [row[m.astype(bool)].tolist() for row, m in zip(ids, mask, strict=True)]


@pytest.mark.parametrize("length", [256, 32])
def test_embeddings_match_reference(length: int, minilm_reference: dict, minilm_256: TextEncoder) -> None:
    encoder = minilm_256 if length == 256 else TextEncoder.from_preset("minilm-l6", sequence_length=length)
    rows = minilm_reference["embeddings"][str(length)]
    texts = [row["text"] for row in rows]
    assert any(len(row["ids"]) == length for row in rows), "one sentence must be longer than the sequence"
    assert any("é" in text for text in texts)
    got = encoder.embed(texts)
    expected = np.array([row["embedding"] for row in rows])
    cosine = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.9999, cosine
    assert real_ids(encoder, texts) == [row["ids"] for row in rows]


def test_token_ids_match_reference_tokenizer_on_tricky_strings(minilm_reference: dict,
                                                               minilm_256: TextEncoder) -> None:
    cases = minilm_reference["tokens"]
    got = real_ids(minilm_256, [case["text"] for case in cases])
    cls_id, sep_id = 101, 102
    for case, ids in zip(cases, got, strict=True):
        assert ids[0] == cls_id and ids[-1] == sep_id
        assert ids[1:-1] == case["ids"], case["text"]


def test_empty_long_and_invalid_utf8_text(minilm_256: TextEncoder) -> None:
    short = TextEncoder.from_preset("minilm-l6", sequence_length=16)
    tokens = short.tokenize(["", "word " * 100])
    assert tokens["padding_mask"].numpy().sum(1).tolist() == [2, 16]  # [CLS][SEP]; truncated to L
    assert tokens["token_ids"].numpy()[1, -1] == 102  # truncation keeps the closing [SEP]
    empty = short.embed([""])
    assert np.isfinite(empty).all() and abs(np.linalg.norm(empty) - 1.0) < 1e-5
    # Invalid UTF-8 bytes are dropped; the rest of the text is encoded.
    broken, clean = minilm_256.embed([b"caf\xc3\xa9 \xff\xfe au lait", "café  au lait"])
    assert float(broken @ clean) > 0.99999


def test_waterfall_truncation_gives_the_same_ids_for_one_segment() -> None:
    texts = ["word " * 50, "short"]
    robin = TextEncoder.from_preset("minilm-l6", sequence_length=12).tokenize(texts)["token_ids"].numpy()
    fall = TextEncoder.from_preset("minilm-l6", sequence_length=12, truncate="waterfall").tokenize(texts)
    assert np.array_equal(robin, fall["token_ids"].numpy())


def test_keras_hub_before_0_30_reads_a_renamed_copy_that_gives_the_reference_embeddings(
        minilm_reference: dict, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Python 3.10 installs keras-hub 0.25, whose converter needs "bert."-prefixed names: the copy made for it,
    read back by this keras-hub, still matches the independent reference (so the renaming loses nothing)."""
    from safetensors import safe_open

    from tfmtl.encoders.text import _hub_bert_folder, minilm_folder

    monkeypatch.setenv("TFMTL_DATA_DIR", str(tmp_path))
    source = str(minilm_folder())
    assert _hub_bert_folder(source, "0.32.0") == source  # this keras-hub reads the names as they are
    copy = _hub_bert_folder(source, "0.25.1")
    assert copy != source and copy.startswith(str(tmp_path))
    assert _hub_bert_folder(source, "0.25.1") == copy  # converted once, then reused
    with safe_open(f"{copy}/model.safetensors", framework="np") as handle:
        names = set(handle.keys())
    assert "bert.embeddings.word_embeddings.weight" in names and "bert.encoder.layer.0.output.LayerNorm.gamma" in names
    assert not any(name.endswith("LayerNorm.weight") or not name.startswith("bert.") for name in names)

    rows = minilm_reference["embeddings"]["32"]
    got = TextEncoder.from_preset(copy, sequence_length=32).embed([row["text"] for row in rows])
    expected = np.array([row["embedding"] for row in rows])
    cosine = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.9999, cosine


@pytest.mark.parametrize("window", [8192, 3])
def test_embed_cuts_each_batch_to_its_longest_text_and_keeps_the_order(minilm_256: TextEncoder, monkeypatch,
                                                                       window: int) -> None:
    """embed() batches texts by token count and drops the padding columns; the full-width padded call (every text
    at 256 tokens) is the reference, for texts given long and short interleaved, over batches of different widths,
    sorted all together or window by window."""
    monkeypatch.setattr(text_module, "EMBED_WINDOW", window)
    texts = ["a long plot overview, " * 30, "Heat", "", "Toy Story (1995)", "word " * 300, "café au lait", "x y z"]
    tokens = minilm_256.tokenize(texts)
    assert tokens["token_ids"].shape[1] == 256
    padded = minilm_256(tokens, training=False).numpy()
    got = minilm_256.embed(texts, batch_size=2)
    np.testing.assert_allclose(got, padded, atol=2e-6)
    assert len({tuple(np.round(row, 4)) for row in got}) == len(texts)
