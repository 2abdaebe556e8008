"""Recommendations in this process (notebooks, scripts): the serving module's signatures, called without a server.

``LocalRecommender(run)`` builds exactly what :func:`tfmtl.export` saves, so what it returns is what TF Serving would
return for the same request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfmtl.data.history import user_histories
from tfmtl.exporting import prepare
from tfmtl.serving import signatures as wire


class LocalRecommender:
    """``LocalRecommender(run).recommend("42", k=10)`` -> a table of item_id, title, score."""

    def __init__(self, run: Any, *, max_k: int = 1000) -> None:
        prepared = prepare(run, max_k=max_k)
        self.module = prepared.module
        self.data = prepared.source.data
        self._known_rows = prepared.source.known_rows
        self._functions = self.module.signatures()
        self._inputs = wire.signature_inputs(self.module.space, tuple(self.module.model.config.tasks))

    def recommend(self, user: str | Mapping[str, Any], k: int = 10, *, exclude: Sequence[str] = (),
                  exclude_seen: bool = False) -> Any:
        """The user's top ``k`` (a pandas DataFrame: rank, item_id, title, score); ``exclude_seen`` leaves out
        every item the user rated in the training rows."""
        import pandas as pd

        features = dict(user) if isinstance(user, Mapping) else {wire.USER_ID: str(user)}
        excluded = list(exclude)
        if exclude_seen:
            histories = user_histories(self.data, self._known_rows, length=len(self.data.items))
            excluded += histories.get(str(features[wire.USER_ID]), [])
        inputs = self._row(wire.RETRIEVE_EXCLUDING, features)
        inputs[wire.K] = tf.constant([k], tf.int32)
        inputs[wire.EXCLUDE_ITEM_IDS] = tf.constant([excluded or [wire.PAD]], tf.string)
        outputs = self._functions[wire.RETRIEVE_EXCLUDING](**inputs)
        ids = [v.decode() for v in outputs[wire.ITEM_IDS].numpy()[0]]
        titles = ([v.decode() for v in outputs[wire.ITEM_TITLES].numpy()[0]] if wire.ITEM_TITLES in outputs
                  else [""] * len(ids))
        table = pd.DataFrame({"rank": np.arange(1, len(ids) + 1), "item_id": ids, "title": titles,
                              "score": outputs[wire.SCORES].numpy()[0]})
        return table[table["item_id"] != wire.PAD].reset_index(drop=True)

    def _row(self, signature: str, features: Mapping[str, Any]) -> dict[str, tf.Tensor]:
        """One request row: the features given, everything else missing."""
        specs = {f.name: (f.dtype, f.shape) for f in self._inputs[signature]
                 if f.name not in (wire.K, wire.EXCLUDE_ITEM_IDS)}
        return {key: tf.constant(value) for key, value in wire.feature_columns(specs, [features]).items()}
