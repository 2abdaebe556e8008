"""Encoders. ``text`` owns the Keras 2/3 seam and is the only module that imports keras-hub."""

from __future__ import annotations

from tfmtl.encoders.onnx_bert import bge_small_folder, paraphrase_minilm_l3_folder
from tfmtl.encoders.text import TextEncoder, learn_wordpiece_vocabulary, minilm_folder, normalize_text

__all__ = [
    "TextEncoder", "bge_small_folder", "learn_wordpiece_vocabulary", "minilm_folder", "normalize_text",
    "paraphrase_minilm_l3_folder",
]
