"""Typed, validated, frozen configuration. Each section round-trips through JSON via get_config/from_config."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

POOLINGS = ("mean", "cls")
TRUNCATIONS = ("round_robin", "waterfall")


@dataclass(frozen=True)
class TextEncoderConfig:
    """The pretrained text encoder of the item tower.

    Attributes:
        preset: ``minilm-l6`` (pretrained, offline; the default), ``tiny`` (random init, vocabulary learned from
            the data), a keras-hub preset name (downloads) or a local keras-hub / Hugging Face preset folder.
        sequence_length: L, tokens per text including [CLS] and [SEP]; longer texts are truncated.
        trainable_layers: how many of the top transformer layers train (0 = frozen); -1 trains everything,
            embeddings included.
        pooling: ``mean`` over the padding mask (as sentence-transformers) or ``cls`` (the [CLS] vector).
        normalize: L2-normalise the output.
        projection_dim: a trainable dense projection to this size after pooling; None keeps the hidden size.
        truncate: ``round_robin`` (keras-hub's default) or ``waterfall`` (no TF Text trimmer op, so exports also
            load on TF Serving 2.19 and older).
        dropout: dropout inside the transformer while training (the pretrained value is 0.1).
        tiny_*: the size of the ``tiny`` preset.
    """

    preset: str = "minilm-l6"
    sequence_length: int = 32
    trainable_layers: int = 0
    pooling: str = "mean"
    normalize: bool = True
    projection_dim: int | None = None
    truncate: str = "round_robin"
    dropout: float = 0.1
    tiny_vocabulary_size: int = 2000
    tiny_hidden_dim: int = 64
    tiny_num_layers: int = 2
    tiny_num_heads: int = 2
    tiny_intermediate_dim: int = 128

    def __post_init__(self) -> None:
        _require(bool(self.preset), "preset", self.preset, "must be a non-empty string")
        _require(2 <= self.sequence_length <= 512, "sequence_length", self.sequence_length, "must be in [2, 512]")
        _require(self.trainable_layers >= -1, "trainable_layers", self.trainable_layers,
                 "must be -1 (everything), 0 (frozen) or the number of top layers to train")
        _require(self.pooling in POOLINGS, "pooling", self.pooling, f"must be one of {', '.join(POOLINGS)}")
        _require(self.truncate in TRUNCATIONS, "truncate", self.truncate, f"must be one of {', '.join(TRUNCATIONS)}")
        _require(self.projection_dim is None or self.projection_dim > 0, "projection_dim", self.projection_dim,
                 "must be positive or None")
        _require(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "must be in [0, 1)")
        _require(self.tiny_hidden_dim % self.tiny_num_heads == 0, "tiny_hidden_dim", self.tiny_hidden_dim,
                 f"must be divisible by tiny_num_heads ({self.tiny_num_heads})")

    def get_config(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TextEncoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"TextEncoderConfig: unknown field '{unknown[0]}' (known: {', '.join(sorted(known))})")
        return cls(**config)


def _require(ok: bool, field: str, value: object, rule: str) -> None:
    if not ok:
        raise ValueError(f"config field '{field}' {rule}, got {value!r}")
