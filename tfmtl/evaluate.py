"""One pass over the catalog: full-catalog retrieval metrics, ranking-head metrics, genre metrics.

The catalog embedding matrix is built once per evaluation (FactorizedTopK rebuilds it for every batch), then
each chunk of rows is scored against it with one matmul, as TFRS scores it, and ranked in NumPy. Metric names
follow DESIGN.md.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfmtl.config import ModelConfig
from tfmtl.data.interactions import ITEM_ID, USER_ID, InteractionData
from tfmtl.data.pipeline import make_dataset
from tfmtl.metrics import (
    DEFAULT_KS,
    binary_metrics,
    chunked_retrieval_metrics,
    columns_mask,
    multilabel_metrics,
    rating_metrics,
)
from tfmtl.model import MultiTaskRecommender
from tfmtl.targets import Target, content_key, target_key

SCORE_CHUNK = 2048
_TRACED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def evaluate_model(model: MultiTaskRecommender, data: InteractionData, train_rows: np.ndarray, rows: np.ndarray, *,
                   ks: Sequence[int] = DEFAULT_KS, batch_size: int = 4096, until_row_time: bool = True,
                   tasks: Sequence[str] | None = None, candidates: Sequence[str] | None = None) -> dict[str, float]:
    """Metrics of every task that is on (or of ``tasks`` only), over interaction ``rows`` (the user's
    ``train_rows`` are excluded).

    Retrieval ranks every item of the model's catalog, or only the item ids in ``candidates`` (e.g. the new
    items of a cold-start test; every row's item must be one of them): ``retrieval/top_K_accuracy`` with nothing
    excluded (the TFRS protocol), recall / NDCG @K and MRR with the user's training items excluded.
    """
    if len(rows) == 0:
        raise ValueError("evaluate_model: there are no rows to evaluate")
    space = model.space
    targets = [t for name, t in space.targets.items() if tasks is None or name in tasks]
    arrays = space.interaction_arrays(data, train_rows, rows, is_training=False, until_row_time=until_row_time)
    users, outputs = _predict_rows(model, arrays, batch_size)
    metrics: dict[str, float] = {}
    for target in targets:
        if target.type == "retrieval":
            positive = arrays.get(target_key(target.name))  # rows a `positive` condition keeps
            kept = slice(None) if positive is None else positive == 1.0
            if positive is None or np.any(positive == 1.0):
                metrics.update(_retrieval(model, data, train_rows, {k: v[kept] for k, v in arrays.items()},
                                          users[kept], ks, batch_size, candidates, prefix=target.name))
        elif target.type == "content":
            metrics.update(_content(model, arrays, batch_size, prefix=target.name))
        elif target.type == "mlm":
            metrics.update(_masked_lm(model, arrays, batch_size, prefix=target.name))
        else:
            metrics.update(_ranking_metrics(target, outputs[target.output], arrays[target.label],
                                            arrays[target_key(target.name)]))
    return metrics


def predict_rows(model: MultiTaskRecommender, data: InteractionData, train_rows: np.ndarray, rows: np.ndarray, *,
                 batch_size: int = 4096, until_row_time: bool = True) -> dict[str, np.ndarray]:
    """What ``rank`` serves for each of the interaction ``rows`` (its user and item): ``{output: [len(rows)]}``,
    e.g. ``click_probability``; the user tower reads the user's ``train_rows`` as :func:`evaluate_model` does."""
    arrays = model.space.interaction_arrays(data, train_rows, rows, is_training=False, until_row_time=until_row_time)
    return _predict_rows(model, arrays, batch_size)[1]


def _ranking_metrics(target: Target, predicted: np.ndarray, label: np.ndarray,
                     values: np.ndarray) -> dict[str, float]:
    """A binary or regression task's metrics over the rows whose label is known (NaN rows are left out, and
    counted as ``<task>/missing``); a regression's in the label's units."""
    if target.type == "binary":
        return _over_known(values, target.name, lambda known: binary_metrics(predicted[known], values[known],
                                                                           prefix=target.name))
    return _over_known(values, target.name, lambda known: rating_metrics(predicted[known], label[known],
                                                                       prefix=target.name))


def _over_known(values: np.ndarray, prefix: str,
                metrics: Callable[[np.ndarray], dict[str, float]]) -> dict[str, float]:
    """``metrics(known)`` over the rows whose value is known, plus ``<prefix>/missing`` when some are not."""
    known = np.isfinite(values)
    counted = {f"{prefix}/missing": float(np.sum(~known))} if not known.all() else {}
    return {**metrics(known), **counted} if known.any() else counted


def metric_names(config: ModelConfig, ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    """The names :func:`evaluate_model` reports for a model config."""
    names: list[str] = []
    for name, task in config.tasks.items():
        if task.type == "retrieval":
            names += [f"{name}/top_{k}_accuracy" for k in ks]
            names += [f"{name}/{metric}_at_{k}" for metric in ("recall", "ndcg") for k in ks]
            names.append(f"{name}/mrr")
        elif task.type == "regression":
            names += [f"{name}/rmse", f"{name}/mae"]
        elif task.type == "binary":
            names += [f"{name}/{m}" for m in ("auc", "accuracy", "precision", "recall", "f1")]
        else:  # a content task: multi-label metrics for a multi-valued feature, RMSE and MAE for a numeric one
            names += [f"{name}/{m}" for m in ("micro_f1", "macro_auc", "precision_at_1", "accuracy", "rmse", "mae")]
    return names


def catalog_embeddings(model: MultiTaskRecommender, batch_size: int = 4096) -> np.ndarray:
    """Embeddings [I, D] of every catalog item, in ``model.space.catalog`` order."""
    embed = _functions(model)["items"]
    return np.concatenate([embed(batch).numpy()
                           for batch in make_dataset(model.space.catalog, batch_size=batch_size)])


def _functions(model: MultiTaskRecommender) -> dict[str, Any]:
    """Traced once per model (evaluation runs every epoch), not once per call."""
    if model not in _TRACED:
        _TRACED[model] = {
            "items": tf.function(lambda batch: model.embed_item(batch, training=False)),
            "rows": tf.function(lambda batch: (model.embed_user(batch, training=False),
                                               model.rank(batch, training=False))),
            "content": tf.function(model.content_predictions),
        }
    return _TRACED[model]


def _predict_rows(model: MultiTaskRecommender, arrays: dict[str, np.ndarray],
                  batch_size: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    step = _functions(model)["rows"]
    users, outputs = [], []
    for batch in make_dataset(arrays, batch_size=batch_size):
        user, ranked = step(batch)
        users.append(user.numpy())
        outputs.append({k: v.numpy() for k, v in ranked.items()})
    merged = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]} if outputs else {}
    return np.concatenate(users), merged


def _retrieval(model: MultiTaskRecommender, data: InteractionData, train_rows: np.ndarray,
               arrays: dict[str, np.ndarray], users: np.ndarray, ks: Sequence[int],
               batch_size: int, candidates: Sequence[str] | None, *, prefix: str) -> dict[str, float]:
    catalog_ids = np.asarray(model.space.catalog[ITEM_ID]).astype(str)
    kept = np.arange(len(catalog_ids)) if candidates is None else _candidate_columns(catalog_ids, candidates)
    column = {item: i for i, item in enumerate(catalog_ids[kept])}
    unknown = [i for i in arrays[ITEM_ID] if str(i) not in column]
    if unknown:
        where = "the model's catalog" if candidates is None else "the candidates"
        raise ValueError(f"evaluate_model: item '{unknown[0]}' is not in {where} ({len(unknown)} rows)"
                         + ("; rebuild the features from this data" if candidates is None else ""))
    positives = np.array([column[str(i)] for i in arrays[ITEM_ID]], dtype=np.int64)
    seen = _seen_columns(data, train_rows, column)
    row_seen = [seen.get(str(user), []) for user in arrays[USER_ID]]
    items = tf.constant(catalog_embeddings(model, batch_size)[kept])

    def scores(start: int, stop: int) -> np.ndarray:
        return tf.linalg.matmul(users[start:stop], items, transpose_b=True).numpy()

    def positive_scores(start: int, stop: int) -> np.ndarray:  # FactorizedTopK's own rounding, for top_K_accuracy
        return tf.reduce_sum(users[start:stop] * tf.gather(items, positives[start:stop]), axis=1).numpy()

    metrics = chunked_retrieval_metrics(scores, positives,
                                        lambda start, stop: columns_mask(row_seen[start:stop], int(items.shape[0])),
                                        ks=ks, chunk_size=SCORE_CHUNK, positive_scores=positive_scores)
    return {prefix + name.removeprefix("retrieval"): value for name, value in metrics.items()}


def _candidate_columns(catalog_ids: np.ndarray, candidates: Sequence[str]) -> np.ndarray:
    """Catalog columns of the candidate item ids, in catalog order."""
    wanted = {str(item) for item in candidates}
    missing = wanted.difference(catalog_ids)
    if not wanted or missing:
        raise ValueError("evaluate_model: candidates must be item ids of the model's catalog"
                         + (f"; '{sorted(missing)[0]}' is not ({len(missing)} ids)" if missing else "; none given"))
    return np.flatnonzero(np.isin(catalog_ids, list(wanted)))


def _seen_columns(data: InteractionData, train_rows: np.ndarray, column: dict[str, int]) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    train = data.interactions.iloc[train_rows]
    for user, item in zip(train[USER_ID].astype(str), train[ITEM_ID].astype(str), strict=False):
        if item in column:
            seen.setdefault(user, []).append(column[item])
    return seen


def _content(model: MultiTaskRecommender, arrays: dict[str, np.ndarray], batch_size: int, *,
             prefix: str) -> dict[str, float]:
    """The content task on the distinct items of the rows, with its feature hidden from the tower: a multi-valued
    feature's multi-label metrics, or a numeric one's RMSE and MAE (in its units, over the items that have it)."""
    head = model.content_head
    if head is None:
        return {}
    column, step = model.space.genre_column, _functions(model)["content"]
    _, first = np.unique(arrays[ITEM_ID].astype(str), return_index=True)
    keys = (*model.space.item_columns, content_key(column)) if model.space.content_is_numeric \
        else model.space.item_columns
    items = {k: arrays[k][first] for k in keys}
    batches = list(make_dataset(items, batch_size=batch_size))
    predicted = np.concatenate([step(batch).numpy() for batch in batches])
    if model.space.content_is_numeric:
        actual = items[content_key(column)].astype(np.float64)
        return _over_known(actual, prefix, lambda known: rating_metrics(predicted[known], actual[known],
                                                                        prefix=prefix))
    targets = np.concatenate([head.targets(batch[column]).numpy() for batch in batches])
    return multilabel_metrics(predicted, targets, prefix=prefix)


def _masked_lm(model: MultiTaskRecommender, arrays: dict[str, np.ndarray], batch_size: int, *,
               prefix: str) -> dict[str, float]:
    """The mlm task's loss on the distinct non-empty item texts of the rows (every text column), the same masks every
    evaluation (seeded by batch)."""
    if model.masked_lm is None:
        return {}
    texts = np.unique(np.concatenate([arrays[column].astype(str) for column in model.space.item_text]))
    texts = texts[np.char.str_len(np.char.strip(texts.astype(str))) > 0]
    return {f"{prefix}/loss": model.masked_lm.held_out_loss(texts, batch_size=batch_size, seed=1)}


def metrics_table(metrics: dict[str, Any], title: str = "metric") -> str:
    """A markdown table of metric -> value."""
    lines = [f"| {title} | value |", "|---|---|"]
    lines += [f"| `{name}` | {value:.4f} |" if isinstance(value, float) else f"| `{name}` | {value} |"
              for name, value in metrics.items()]
    return "\n".join(lines) + "\n"
