"""Domain-adaptive pretraining: masked-language-model training of the text encoder on the catalog's own texts.

The head and the loss are tf-keras (Keras 2) and read the encoder's raw variables, so the same code serves
``tfmtl pretrain`` (this module's :func:`pretrain`) and an ``mlm`` task inside the multi-task loss. BERT's MLM head
(dense + GELU + layer norm, then the token embeddings transposed, plus a bias) is rebuilt here: sentence-encoder
checkpoints such as all-MiniLM-L6-v2 ship without it, so it starts fresh.

Whether adaptation helps is measured against the unadapted encoder given the same budget: a head trained alone on
the frozen encoder, for as many steps, scored on the same held-out texts with the same masks.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfmtl.config import TextEncoderConfig
from tfmtl.encoders.text import TextEncoder
from tfmtl.log import log as _log

MASK_RATE = 0.15
REPORT_FILE = "pretrain.json"


class MaskedLMHead(tf.keras.layers.Layer):
    """Hidden states at the masked positions [B, M, H] -> logits over the vocabulary [B, M, V].

    The output matrix is the encoder's token embedding table (tied, as in BERT), so the head adds only a dense
    layer, a layer norm and a bias.
    """

    def __init__(self, token_embeddings: tf.Variable, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        vocabulary_size, hidden_dim = (int(d) for d in token_embeddings.shape)
        # === Layers ===
        self.dense = tf.keras.layers.Dense(hidden_dim, activation=lambda x: tf.nn.gelu(x, approximate=False),
                                           name="transform")
        self.layer_norm = tf.keras.layers.LayerNormalization(epsilon=1e-12, name="layer_norm")
        self.bias = self.add_weight(name="output_bias", shape=[vocabulary_size], initializer="zeros")
        # === Config ===
        self._table = _Untracked(token_embeddings)  # the encoder owns, trains (or not) and checkpoints the table

    def call(self, hidden: tf.Tensor) -> tf.Tensor:
        x = self.layer_norm(self.dense(tf.cast(hidden, tf.float32)))
        return tf.matmul(x, self._table.value, transpose_b=True) + self.bias


class _Untracked:
    """Plain holder: tf-keras tracks variables in a layer's attributes, lists and dicts, but not in this."""

    def __init__(self, value: tf.Variable) -> None:
        self.value = value


@dataclass(frozen=True)
class Masked:
    """One masked batch: the encoder's input with some tokens replaced, and what must be predicted where."""

    tokens: dict[str, tf.Tensor]  # token_ids (masked), segment_ids, padding_mask [B, L]
    positions: tf.Tensor  # int32 [B, M]
    targets: tf.Tensor  # int32 [B, M], the original token ids
    weights: tf.Tensor  # float32 [B, M], 0 for the slots of rows with fewer than M maskable tokens


def mask_tokens(tokens: dict[str, tf.Tensor], *, special_ids: tuple[int, ...], mask_id: int, vocabulary_size: int,
                seed: tf.Tensor, rate: float = MASK_RATE) -> Masked:
    """BERT's masking: ``rate`` of each row's real, non-special tokens (at least one) are chosen; of those 80%
    become ``mask_id``, 10% a random token, 10% stay. Stateless: the same ``seed`` [2] masks the same way."""
    token_ids = tf.convert_to_tensor(tokens["token_ids"], tf.int32)
    length = int(token_ids.shape[1])
    slots = max(1, math.ceil(rate * length))
    maskable = tf.cast(tokens["padding_mask"], tf.bool)
    for special in special_ids:
        maskable &= tf.not_equal(token_ids, special)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    scores = tf.where(maskable, tf.random.stateless_uniform(tf.shape(token_ids), seeds[0]), -1.0)
    chosen_scores, positions = tf.math.top_k(scores, k=slots)  # the highest random scores among maskable tokens
    wanted = tf.maximum(1, tf.cast(tf.math.round(rate * tf.reduce_sum(tf.cast(maskable, tf.float32), axis=1)),
                                   tf.int32))
    weights = tf.cast((chosen_scores >= 0.0) & (tf.range(slots)[tf.newaxis, :] < wanted[:, tf.newaxis]),
                      tf.float32)
    targets = tf.gather(token_ids, positions, batch_dims=1)
    action = tf.random.stateless_uniform(tf.shape(positions), seeds[1])
    random_ids = tf.random.stateless_uniform(tf.shape(positions), seeds[2], minval=0, maxval=vocabulary_size,
                                             dtype=tf.int32)
    replacement = tf.where(action < 0.8, mask_id, tf.where(action < 0.9, random_ids, targets))
    replacement = tf.where(weights > 0, replacement, targets)
    rows = tf.broadcast_to(tf.range(tf.shape(positions)[0])[:, tf.newaxis], tf.shape(positions))
    masked_ids = tf.tensor_scatter_nd_update(token_ids, tf.stack([rows, positions], axis=-1), replacement)
    return Masked(tokens={**tokens, "token_ids": masked_ids}, positions=positions, targets=targets, weights=weights)


def masked_lm_loss(logits: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy over the masked tokens: sum(w · CE) / sum(w)."""
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    return tf.reduce_sum(losses * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


class MaskedLanguageModel(tf.keras.layers.Layer):
    """A text encoder and its MLM head: texts -> the masked-LM loss (what ``pretrain`` and the ``mlm`` task train)."""

    def __init__(self, encoder: TextEncoder, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # === Layers ===
        self.encoder = encoder
        self.head = MaskedLMHead(encoder.token_embeddings, name="mlm_head")
        # === Config ===
        self.special_ids = encoder.special_token_ids
        self.mask_id = encoder.mask_token_id
        self.vocabulary_size = int(encoder.token_embeddings.shape[0])

    def mask(self, texts: tf.Tensor, seed: tf.Tensor) -> Masked:
        """Texts [B] -> a masked batch (``seed`` [2] picks the masks)."""
        return mask_tokens(self.encoder.tokenize(texts), special_ids=self.special_ids, mask_id=self.mask_id,
                           vocabulary_size=self.vocabulary_size, seed=seed)

    def loss(self, masked: Masked, training: bool | None = None) -> tf.Tensor:
        sequence = self.encoder.sequence(masked.tokens, training=bool(training))  # [B, L, H]
        hidden = tf.gather(sequence, masked.positions, batch_dims=1)  # [B, M, H]
        return masked_lm_loss(self.head(hidden), masked.targets, masked.weights)

    def held_out_loss(self, texts: Sequence[str] | np.ndarray, *, batch_size: int, seed: int,
                      offset: int = 0) -> float:
        """The masked-LM loss of ``texts`` [N], a mean over every masked token (not over batches), the batch at
        ``i`` masked with the seed (offset + i, seed): the same masks at every call, so that calls compare."""
        total = count = 0.0
        for i in range(0, len(texts), batch_size):
            loss_sum, weight = self._summed_loss(tf.constant(list(texts[i:i + batch_size])),
                                                 tf.constant([offset + i, seed], tf.int64))
            total, count = total + float(loss_sum), count + float(weight)
        return total / max(count, 1.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([2], tf.int64)])
    def _summed_loss(self, texts: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        masked = self.mask(texts, seed)
        weight = tf.reduce_sum(masked.weights)
        return self.loss(masked, training=False) * weight, weight


# === tfmtl pretrain ===

@dataclass(frozen=True)
class PretrainConfig:
    """``tfmtl pretrain`` settings: the encoder to adapt and the training budget."""

    encoder: TextEncoderConfig
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 5e-5
    head_learning_rate: float = 1e-3
    held_out_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for field, ok, rule in (("epochs", self.epochs >= 1, "must be >= 1"),
                                ("batch_size", self.batch_size >= 1, "must be >= 1"),
                                ("learning_rate", self.learning_rate > 0, "must be positive"),
                                ("head_learning_rate", self.head_learning_rate > 0, "must be positive"),
                                ("held_out_fraction", 0 < self.held_out_fraction < 1, "must be in (0, 1)")):
            if not ok:
                raise ValueError(f"pretrain setting '{field}' {rule}, got {getattr(self, field)!r}")
        if self.encoder.trainable_layers == 0:
            raise ValueError("pretrain setting 'encoder.trainable_layers' is 0 (frozen): nothing would adapt; use -1 "
                             "(everything) or the number of top layers to train")


def split_texts(texts: Any, fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Distinct non-empty texts -> (training, held-out), a fixed shuffle."""
    values = sorted({str(t) for t in np.asarray(texts, dtype=object).reshape(-1) if isinstance(t, str) and t.strip()})
    if len(values) < 2:
        raise ValueError(f"pretraining needs at least 2 distinct non-empty texts, got {len(values)}")
    order = np.random.default_rng(seed).permutation(len(values))
    held = max(1, int(round(fraction * len(values))))
    return [values[i] for i in order[held:]], [values[i] for i in order[:held]]


def pretrain(texts: Any, config: PretrainConfig, output: str | Path, *, resume: bool = False,
             progress: bool = True) -> dict[str, Any]:
    """Adapts the encoder to ``texts`` and saves it as a local keras-hub preset in ``output/preset`` (what
    ``train --encoder`` accepts). Checkpoints every epoch into ``output/checkpoints``; ``resume`` continues them.

    Returns the report (also written to ``output/pretrain.json``): held-out masked-LM loss of the unadapted encoder
    (head only, same steps) and of the adapted one, per epoch, with the step counts and times.
    """
    output = Path(output)
    train_texts, held_out = split_texts(texts, config.held_out_fraction, config.seed)
    _log(f"{len(train_texts)} training texts, {len(held_out)} held out")
    baseline = _train_mlm(train_texts, held_out, config, output / "head-only", adapt=False, resume=resume,
                          progress=progress)
    adapted = _train_mlm(train_texts, held_out, config, output / "checkpoints", adapt=True, resume=resume,
                         progress=progress, preset=output / "preset")
    report = {"texts": {"train": len(train_texts), "held_out": len(held_out)}, "config": _jsonable(config),
              "unadapted": baseline, "adapted": adapted, "preset": str(output / "preset"),
              "held_out_loss_change": adapted["held_out_loss"][-1] - baseline["held_out_loss"][-1]}
    (output / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _train_mlm(texts: list[str], held_out: list[str], config: PretrainConfig, folder: Path, *, adapt: bool,
               resume: bool, progress: bool, preset: Path | None = None) -> dict[str, Any]:
    """Trains the head (and, when ``adapt``, the encoder) for ``config.epochs``; held-out loss after each epoch."""
    from tqdm.auto import tqdm

    encoder = TextEncoder.from_encoder_config(config.encoder, seed=config.seed)
    tf.keras.utils.set_random_seed(config.seed)
    model = MaskedLanguageModel(encoder)
    head_optimizer = tf.keras.optimizers.Adam(config.head_learning_rate)
    encoder_optimizer = tf.keras.optimizers.Adam(config.learning_rate)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(encoder=encoder, head=model.head, head_optimizer=head_optimizer,
                                     encoder_optimizer=encoder_optimizer, step=step, epoch=epoch)
    manager = tf.train.CheckpointManager(checkpoint, str(folder), max_to_keep=1)
    history: list[dict[str, float]] = []
    if manager.latest_checkpoint and not resume:
        raise ValueError(f"{folder} holds a pretraining checkpoint: pass --resume to continue it, or choose another "
                         "--output")
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        history = json.loads((folder / "history.json").read_text()) if (folder / "history.json").exists() else []
        _log(f"resumed {'adaptation' if adapt else 'head-only run'} at epoch {int(epoch.numpy())}")
    head_variables = model.head.trainable_weights
    encoder_variables = encoder.trainable_weights if adapt else []

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([2], tf.int64)])
    def train_step(batch: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        masked = model.mask(batch, seed)
        with tf.GradientTape() as tape:
            loss = model.loss(masked, training=True)
        gradients = tape.gradient(loss, head_variables + encoder_variables)
        head_optimizer.apply_gradients(zip(gradients[:len(head_variables)], head_variables, strict=True))
        if encoder_variables:
            encoder_optimizer.apply_gradients(zip(gradients[len(head_variables):], encoder_variables, strict=True))
        return loss

    def held_out_loss() -> float:  # the same masks for every run
        return model.held_out_loss(held_out, batch_size=config.batch_size, seed=config.seed, offset=10_000)

    rng = np.random.default_rng(config.seed)
    orders = [rng.permutation(len(texts)) for _ in range(config.epochs)]  # fixed up front: resume sees the same
    for e in range(int(epoch.numpy()), config.epochs):
        started = time.perf_counter()
        batches = range(0, len(texts), config.batch_size)
        bar = tqdm(batches, desc=f"{'adapt' if adapt else 'head only'} epoch {e + 1}/{config.epochs}",
                   file=sys.stderr, disable=not progress)
        losses = []
        for i in bar:
            batch = [texts[j] for j in orders[e][i:i + config.batch_size]]
            losses.append(float(train_step(tf.constant(batch), tf.stack([step, tf.constant(config.seed, tf.int64)]))))
            step.assign_add(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        epoch.assign(e + 1)
        history.append({"epoch": e + 1, "train_loss": float(np.mean(losses)), "held_out_loss": held_out_loss(),
                        "seconds": round(time.perf_counter() - started, 1)})
        _log(f"{'adapted' if adapt else 'head only'} epoch {e + 1}: {history[-1]}")
        manager.save()
        (folder / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    if preset is not None:
        encoder.save_preset(preset, notes={"pretrained_on": f"{len(texts)} texts", "epochs": config.epochs})
    return {"steps": int(step.numpy()), "history": history,
            "held_out_loss": [h["held_out_loss"] for h in history]}


def _jsonable(config: PretrainConfig) -> dict[str, Any]:
    out = asdict(config)
    out["encoder"] = config.encoder.get_config()
    return out
