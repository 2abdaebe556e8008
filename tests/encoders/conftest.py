from __future__ import annotations

import json
from pathlib import Path

import pytest

from tfmtl.encoders import TextEncoder

TITLES = ["toy story", "golden eye", "four rooms", "get shorty", "copycat", "twelve monkeys", "babe",
          "dead man walking", "richard iii", "seven", "the usual suspects", "mighty aphrodite"] * 4


def tiny_encoder(seed: int = 0, **options: object) -> TextEncoder:
    """The unit-test fixture: a random 2-layer BERT with hidden 8 and a vocabulary learned from 12 titles."""
    settings = {"sequence_length": 8, "tiny_vocabulary_size": 60, "tiny_hidden_dim": 8, "tiny_num_layers": 2,
                "tiny_num_heads": 2, "tiny_intermediate_dim": 16, "trainable_layers": 1, **options}
    return TextEncoder.from_preset("tiny", texts=TITLES, seed=seed, **settings)


@pytest.fixture(scope="session")
def minilm_reference() -> dict:
    return json.loads((Path(__file__).parent / "fixtures" / "minilm_reference.json").read_text())


@pytest.fixture(scope="session")
def minilm_256() -> TextEncoder:
    return TextEncoder.from_preset("minilm-l6", sequence_length=256)

