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

    def __init__(self, run: Any, *, max_k: int = 1000, user_snapshot: str = "all") -> None:
        prepared = prepare(run, max_k=max_k, user_snapshot=user_snapshot)
        self.module = prepared.module
        self.data = prepared.source.data
        self._known_rows = prepared.source.known_rows
        self._functions = self.module.signatures()
        self._inputs = wire.signature_inputs(self.module.space)

    def recommend(self, user: str | Mapping[str, Any], k: int = 10, *, history: Sequence[str] | None = None,
                  exclude: Sequence[str] = (), exclude_seen: bool = False, exclude_history: bool = False) -> Any:
        """The user's top ``k`` (a pandas DataFrame: rank, item_id, title, score).

        ``history``: the user's recent item ids, oldest first, read instead of the snapshot (as
        ``Client.recommend``); ``exclude_seen`` leaves out every item the user rated in the training rows,
        ``exclude_history`` the items of the history the model read.
        """
        import pandas as pd

        features: dict[str, Any] = dict(user) if isinstance(user, Mapping) else {wire.USER_ID: str(user)}
        if history is not None:
            if isinstance(history, (str, bytes)):
                raise ValueError(f"history: pass a list of item ids, oldest first, not the bare string {history!r}")
            if not self.module.space.history_length:
                raise ValueError("history: this model reads no history (model.history_length is 0)")
            features[wire.HISTORY_ITEM_IDS] = [str(i) for i in history]
        excluded = list(exclude)
        if exclude_seen:
            histories = user_histories(self.data, self._known_rows, length=len(self.data.items))
            excluded += histories.get(str(features[wire.USER_ID]), [])
        inputs = self._row(wire.RETRIEVE_EXCLUDING, features)
        inputs[wire.K] = tf.constant([k], tf.int32)
        inputs[wire.EXCLUDE_ITEM_IDS] = tf.constant([excluded or [wire.PAD]], tf.string)
        if self.module.space.history_length:
            inputs[wire.EXCLUDE_HISTORY] = tf.constant([exclude_history])
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
                 if f.name not in (wire.K, wire.EXCLUDE_ITEM_IDS, wire.EXCLUDE_HISTORY)}
        return {key: tf.constant(value) for key, value in wire.feature_columns(specs, [features]).items()}
