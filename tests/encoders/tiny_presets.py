"""Tiny random keras-hub presets of architectures other than BERT, written with keras-hub's own ``save_to_preset``
(the folders a user's fine-tuned model or ``tfmtl pretrain`` leaves behind). Offline, seconds to build."""

from __future__ import annotations

from pathlib import Path

SIZES = {"num_layers": 2, "num_heads": 2, "hidden_dim": 8, "intermediate_dim": 16, "max_sequence_length": 32}
LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"


def write_preset(architecture: str, folder: Path, words: list[str], *, seed: int = 0,
                 with_tokenizer: bool = True) -> Path:
    """``distil_bert`` (WordPiece), ``roberta`` or ``gpt2`` (byte-level BPE) over ``words``; returns ``folder``."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    if architecture == "distil_bert":
        tokenizer = keras_hub.models.DistilBertTokenizer(
            vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(words))], lowercase=True)
        backbone = keras_hub.models.DistilBertBackbone(vocabulary_size=tokenizer.vocabulary_size(), **SIZES)
    else:
        specials = (["<s>", "<pad>", "</s>", "<unk>", "<mask>"] if architecture == "roberta" else ["<|endoftext|>"])
        vocabulary, merges = _byte_level_bpe(words, specials)
        cls = keras_hub.models.RobertaTokenizer if architecture == "roberta" else keras_hub.models.GPT2Tokenizer
        tokenizer = cls(vocabulary=vocabulary, merges=merges)
        backbone_cls = (keras_hub.models.RobertaBackbone if architecture == "roberta"
                        else keras_hub.models.GPT2Backbone)
        backbone = backbone_cls(vocabulary_size=len(vocabulary), **SIZES)
    folder.mkdir(parents=True, exist_ok=True)
    backbone.save_to_preset(str(folder))
    if with_tokenizer:
        tokenizer.save_to_preset(str(folder))
    return folder


def _byte_level_bpe(words: list[str], specials: list[str]) -> tuple[dict[str, int], list[str]]:
    """Characters, "Ġ" + each first letter, and one merge per word start: enough for real BPE merges to run."""
    tokens = [*specials, "Ġ", *LETTERS, *(f"Ġ{c}" for c in LETTERS)]
    merges = [f"Ġ {c}" for c in LETTERS]
    for word in sorted(set(words)):  # merge each word's first two letters after the space marker
        if len(word) >= 2 and f"Ġ{word[:2]}" not in tokens:
            tokens.append(f"Ġ{word[:2]}")
            merges.append(f"Ġ{word[0]} {word[1]}")
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}, merges
