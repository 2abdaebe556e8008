"""Exporting serving modules (never the training model) as SavedModels that TF Serving loads.

The serving module holds only inference parts. Variables are captured through tracked raw ``tf.Variable``
objects (see ``TextEncoder``), so the TF1 session loader that TF Serving uses restores what the graph reads.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from tfmtl.encoders.text import TextEncoder
from tfmtl.serving.signatures import TEXT_EMBEDDING, TEXT_EMBEDDING_INPUT, TEXT_EMBEDDING_OUTPUT


class TextEmbeddingModule(tf.Module):
    """Strings [B] -> L2-normalised (per the encoder's config) embeddings [B, D], tokenised in-graph."""

    def __init__(self, encoder: TextEncoder) -> None:
        super().__init__(name="text_embedding")
        self.encoder = encoder

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=TEXT_EMBEDDING_INPUT)])
    def embed(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        return {TEXT_EMBEDDING_OUTPUT: self.encoder(text, training=False)}


def save_text_embedder(encoder: TextEncoder, path: str | Path) -> Path:
    """Writes a strings -> embedding SavedModel (signatures ``embed_text`` and ``serving_default``)."""
    module = TextEmbeddingModule(encoder)
    path = Path(path)
    tf.saved_model.save(module, str(path), signatures={TEXT_EMBEDDING: module.embed,
                                                       "serving_default": module.embed})
    return path
