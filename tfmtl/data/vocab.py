"""Vocabularies for string features; index 0 is the shared out-of-vocabulary bucket."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

OOV_INDEX = 0


@dataclass(frozen=True)
class Vocabulary:
    """Known values in order of frequency (ties by value); value ``values[i]`` has index ``i + 1``.

    Matches ``tf.keras.layers.StringLookup(vocabulary=values, num_oov_indices=1)``, so a model can look
    raw strings up in-graph and serving takes raw values. The empty string (padding) is never a value.
    """

    name: str
    values: tuple[str, ...]

    @classmethod
    def build(cls, name: str, values: Iterable[object], *, min_count: int = 1,
              max_size: int | None = None) -> Vocabulary:
        counts = Counter(_flatten(values))
        counts.pop("", None)
        ranked = sorted((v for v, c in counts.items() if c >= min_count), key=lambda v: (-counts[v], v))
        return cls(name, tuple(ranked[:max_size]))

    @property
    def size(self) -> int:
        """Number of indices including the OOV bucket."""
        return len(self.values) + 1

    def lookup(self, values: Iterable[str]) -> np.ndarray:
        index = {value: i + 1 for i, value in enumerate(self.values)}
        return np.array([index.get(v, OOV_INDEX) for v in values], dtype=np.int64)

    def get_config(self) -> dict[str, object]:
        return {"name": self.name, "values": list(self.values)}

    @classmethod
    def from_config(cls, config: dict[str, object]) -> Vocabulary:
        return cls(str(config["name"]), tuple(str(v) for v in config["values"]))  # type: ignore[attr-defined]


def _flatten(values: Iterable[object]) -> Iterable[str]:
    for value in values:
        if isinstance(value, (tuple, list, np.ndarray)):
            yield from (str(v) for v in value)
        else:
            yield str(value)
