"""Offline metrics through the serving path: each test row is sent to ``retrieve_excluding`` as a client would send it.

A row's request carries the user's id, the user's side features and the user's history up to the row's own time
(what the served model would have been sent at that moment); the user's earlier items are excluded, as
:func:`tfmtl.evaluate.evaluate_model` excludes them. So an export with ``--user-snapshot none`` scored here gives the
offline evaluation's recall and NDCG, and users the model never trained on are scored the same way.

```python
metrics = served_retrieval_metrics(saved_model_signature(path), data, history_rows, test_rows,
                                   inputs=manifest_inputs(path), history_length=50)
```
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfmtl.data.history import HISTORY, history_features
from tfmtl.data.interactions import ITEM_ID, USER_ID, InteractionData
from tfmtl.data.pipeline import feature_arrays
from tfmtl.metrics import DEFAULT_KS
from tfmtl.serving import signatures as wire

Signature = Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]]


def served_retrieval_metrics(retrieve_excluding: Signature, data: InteractionData, history_rows: np.ndarray,
                             rows: np.ndarray, *, inputs: Sequence[wire.Field], history_length: int,
                             ks: Sequence[int] = DEFAULT_KS, batch_size: int = 256) -> dict[str, float]:
    """``retrieval/recall_at_K`` and ``retrieval/ndcg_at_K`` of interaction ``rows`` scored through a served
    ``retrieve_excluding``.

    Args:
        retrieve_excluding: inputs (key -> array, in the signature's dtypes) -> outputs (``item_ids`` [B, k]).
        data: the interactions with their user table.
        history_rows: the rows histories and exclusions come from (the training rows, plus the earlier rows of
            users the model never trained on); ``rows`` must not be among them.
        rows: the rows to score (one held-out item each).
        inputs: the signature's input fields (the export manifest's, see :func:`manifest_inputs`).
        history_length: H, the newest items sent (0: the model reads no history; none is sent).
        ks: cut-offs; the largest is the ``k`` requested, so it must not exceed the export's ``max_k``.
        batch_size: rows per request.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if not len(rows):
        raise ValueError("served_retrieval_metrics: there are no rows to score")
    ks = tuple(int(k) for k in ks)
    fields = {f.name: f for f in inputs}
    users = data.interactions[USER_ID].astype(str).to_numpy()
    items = data.interactions[ITEM_ID].astype(str).to_numpy()
    seen = _items_by_user(users[history_rows], items[history_rows])
    user_features = _user_features(data, users[rows], fields)
    histories = (history_features(data, history_rows, rows, length=history_length, is_training=False)[HISTORY]
                 if history_length else None)
    ranks = np.empty(len(rows), np.int64)
    for start in range(0, len(rows), batch_size):
        stop = min(start + batch_size, len(rows))
        request = {key: value[start:stop] for key, value in user_features.items()}
        if histories is not None:
            request[wire.HISTORY_ITEM_IDS] = histories[start:stop]
            request[wire.EXCLUDE_HISTORY] = np.zeros(stop - start, bool)
        request[wire.K] = np.full(stop - start, max(ks), np.int32)
        # The user's earlier items, except the row's own item (evaluate_model never excludes the positive).
        exclusions = [sorted(seen.get(users[row], set()) - {items[row]}) for row in rows[start:stop]]
        request[wire.EXCLUDE_ITEM_IDS] = wire.feature_columns(
            {wire.EXCLUDE_ITEM_IDS: ("string", (None, None))},
            [{wire.EXCLUDE_ITEM_IDS: e} for e in exclusions])[wire.EXCLUDE_ITEM_IDS]
        unknown = sorted(set(request) - set(fields))
        if unknown:
            raise ValueError(f"served_retrieval_metrics: the signature takes no input '{unknown[0]}' (it takes: "
                             f"{', '.join(sorted(fields))})")
        returned = np.asarray(retrieve_excluding(request)[wire.ITEM_IDS])
        for n, row in enumerate(rows[start:stop]):
            listed = [_text(i) for i in returned[n]]
            ranks[start + n] = listed.index(items[row]) if items[row] in listed else max(ks)
    gains = 1.0 / np.log2(ranks.astype(np.float64) + 2.0)
    metrics = {f"retrieval/recall_at_{k}": float(np.mean(ranks < k)) for k in ks}
    metrics.update({f"retrieval/ndcg_at_{k}": float(np.mean(np.where(ranks < k, gains, 0.0))) for k in ks})
    return metrics


def saved_model_signature(path: str | Path, name: str = wire.RETRIEVE_EXCLUDING) -> Signature:
    """A SavedModel's signature as a NumPy function (loaded with ``tf.saved_model.load``)."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops the graph holds)

    function = tf.saved_model.load(str(path)).signatures[name]

    def call(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {key: value.numpy() for key, value in function(**{k: tf.constant(v) for k, v in inputs.items()}).items()}

    return call


def manifest_inputs(path: str | Path, name: str = wire.RETRIEVE_EXCLUDING) -> list[wire.Field]:
    """The input fields of signature ``name``, from an export's manifest."""
    from tfmtl.exporting import ASSETS_EXTRA, MANIFEST_FILE

    manifest = json.loads((Path(path) / ASSETS_EXTRA / MANIFEST_FILE).read_text(encoding="utf-8"))
    return [wire.Field(f["name"], f["dtype"], tuple(f["shape"])) for f in manifest["signatures"][name]["inputs"]]


def _user_features(data: InteractionData, user_ids: np.ndarray, fields: Mapping[str, wire.Field]) -> dict[str, Any]:
    """The request's user columns: the id, and each side feature the signature takes from the user table."""
    table = feature_arrays(data.users, data, include_labels=False)
    row_of = {str(u): n for n, u in enumerate(data.users[USER_ID].astype(str))}
    missing = [u for u in set(user_ids) if u not in row_of]
    if missing:
        raise ValueError(f"served_retrieval_metrics: user '{sorted(missing)[0]}' is not in the user table "
                         f"({len(missing)} users)")
    index = np.array([row_of[u] for u in user_ids], dtype=np.int64)
    out: dict[str, Any] = {USER_ID: np.asarray(user_ids, dtype=object)}
    for key in fields:
        if key in table:
            out[key] = table[key][index]
    return out


def _items_by_user(users: np.ndarray, items: np.ndarray) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for user, item in zip(users, items, strict=True):
        out.setdefault(user, set()).add(item)
    return out


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
