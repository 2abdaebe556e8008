"""The configured tasks resolved against the data: what each task reads, and its targets as arrays.

A :class:`Target` is what the model needs of a task once the data is known (the label column, the condition on
it, the transform, the training mean of a regression target, the content feature). Targets are computed in NumPy
and fed with the features under ``target:<task>`` (NaN where the row's label is missing) and, with sample weights,
``weight:<task>``; the model masks NaN rows out of that task's loss.
"""

from __future__ import annotations

import operator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from tfmtl.config import ModelConfig, TaskConfig, parse_condition

GENRES = "genres"
OPERATORS = {"==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le, ">": operator.gt,
             "<": operator.lt}


@dataclass(frozen=True)
class Target:
    """One task, resolved. ``label``: the interaction label read (binary, regression; a retrieval ``positive``'s
    label); ``op``/``value``: the condition on it ("" when the label is the target itself); ``mean``: the training
    mean of a regression target (after the transform); ``feature``: a content task's item feature; ``mean`` and
    ``scale``: a numeric feature's mean and standard deviation over the training items."""

    name: str
    type: str
    weight: float
    label: str = ""
    op: str = ""
    value: float = 0.0
    transform: str = "none"
    sample_weight: str = ""
    given: str = ""
    feature: str = ""
    mean: float = 0.0
    scale: float = 1.0

    @property
    def ranking(self) -> bool:
        return self.type in ("binary", "regression")

    @property
    def output(self) -> str:
        """The key this task's prediction is served under: ``<task>`` (a value) or ``<task>_probability``."""
        return f"{self.name}_probability" if self.type == "binary" else self.name

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def target_key(task: str) -> str:
    return f"target:{task}"


def content_key(feature: str) -> str:
    """A numeric content feature's raw value (missing stays NaN; the tower's input is filled)."""
    return f"content:{feature}"


def weight_key(task: str) -> str:
    return f"weight:{task}"


def rating_label(labels: tuple[str, ...], field: str) -> str:
    """The label the preset's rating and like tasks read: the one named ``rating``, or the only one."""
    if "rating" in labels:
        return "rating"
    if len(labels) == 1:
        return labels[0]
    if not labels:
        raise ValueError(f"config field '{field}' reads the rating label, but the data has no label column")
    raise ValueError(f"config field '{field}' reads the rating label, but the data has several labels "
                     f"({', '.join(labels)}) and none is named 'rating': give the task a label "
                     f"({{type: ..., label: {labels[0]}}})")


def resolve_targets(config: ModelConfig, labels: tuple[str, ...], interactions: pd.DataFrame,
                    item_multi_valued: tuple[str, ...], train_rows: np.ndarray,
                    item_numeric: tuple[str, ...] = ()) -> dict[str, Target]:
    """Every configured task checked against the data's labels and item features (a ValueError names the field
    and the value), with the training statistics regression targets need."""
    _every_label_has_a_task(config, labels)
    targets = {}
    for name, task in config.tasks.items():
        field = f"model.tasks.{name}"
        if task.type == "retrieval":
            label, op, value = _condition(task.positive, labels, f"{field}.positive", interactions) \
                if task.positive else ("", "", 0.0)
            targets[name] = Target(name, task.type, task.weight, label=label, op=op, value=value)
        elif task.type == "content":
            feature = _content_feature(task, item_multi_valued, item_numeric, field)
            targets[name] = Target(name, task.type, task.weight, feature=feature)
        elif task.type == "mlm":
            targets[name] = Target(name, task.type, task.weight)
        else:
            targets[name] = _ranking_target(name, task, config, labels, interactions, train_rows)
    return targets


def _every_label_has_a_task(config: ModelConfig, labels: tuple[str, ...]) -> None:
    """Several labels and only preset shorthands: which label would 'rating' read? Say so instead of guessing."""
    if len(labels) <= 1 or "rating" in labels:
        return
    implicit = [name for name, task in config.tasks.items() if task.type in ("binary", "regression")
                and not task.label]
    if implicit:
        raise ValueError(f"config field 'model.tasks.{implicit[0]}' has no label, and the data has several "
                         f"({', '.join(labels)}) with no task mapping: give each task a label, e.g. "
                         f"{{type: ..., label: {labels[0]}}}")


def _ranking_target(name: str, task: TaskConfig, config: ModelConfig, labels: tuple[str, ...],
                    interactions: pd.DataFrame, train_rows: np.ndarray) -> Target:
    field = f"model.tasks.{name}"
    if task.label:
        label, op, value = _condition(task.label, labels, f"{field}.label", interactions)
    else:  # the preset: the rating label, and "like" as that label >= the threshold
        label = rating_label(labels, field)
        op, value = (">=", float(config.ranking.like_threshold)) if task.type == "binary" else ("", 0.0)
    if not pd.api.types.is_numeric_dtype(interactions[label].dtype):
        raise ValueError(f"config field '{field}.label' names label {label!r}, which is not numeric "
                         f"(e.g. {interactions[label].iloc[0]!r})")
    if task.type == "regression" and op:
        raise ValueError(f"config field '{field}.label' is a condition ({task.label!r}), which makes a binary "
                         f"target: a regression task reads a label's value (type: binary for a condition)")
    if task.sample_weight:
        _label(task.sample_weight, labels, f"{field}.sample_weight")
    target = Target(name, task.type, task.weight, label=label, op=op, value=value, transform=task.transform,
                    sample_weight=task.sample_weight, given=task.given)
    values = target_values(target, interactions.iloc[train_rows])
    known = values[np.isfinite(values)]
    if task.type == "binary" and not op and not np.isin(known, (0.0, 1.0)).all():
        bad = known[~np.isin(known, (0.0, 1.0))][0]
        raise ValueError(f"config field '{field}.label' names label {label!r}, whose values are not 0/1 (e.g. "
                         f"{bad:g}): a binary task needs 0/1 labels or a condition such as '{label} >= 4'")
    if task.transform == "log1p" and (interactions[label].to_numpy(np.float64) <= -1).any():
        raise ValueError(f"config field '{field}.transform' is log1p, but label {label!r} has values <= -1")
    return Target(**{**target.to_json(), "mean": float(known.mean()) if len(known) else 0.0})


def _label(name: str, labels: tuple[str, ...], field: str) -> str:
    if name not in labels:
        raise ValueError(f"config field '{field}' names unknown label {name!r} (the data's labels: "
                         f"{', '.join(labels) or 'none'})")
    return name


def _condition(text: str, labels: tuple[str, ...], field: str, interactions: pd.DataFrame) -> tuple[str, str, float]:
    parsed = parse_condition(text)
    if parsed is None:
        return _label(text, labels, field), "", 0.0
    label, op, value = parsed
    _label(label, labels, field)
    if not pd.api.types.is_numeric_dtype(interactions[label].dtype):
        raise ValueError(f"config field '{field}' compares label {label!r}, which is not numeric")
    return label, op, value


def _content_feature(task: TaskConfig, item_multi_valued: tuple[str, ...], item_numeric: tuple[str, ...],
                     field: str) -> str:
    """The item feature a content task predicts: a multi-valued one (cross-entropy) or a numeric one (MSE)."""
    if task.feature:
        if task.feature not in (*item_multi_valued, *item_numeric):
            raise ValueError(f"config field '{field}.feature' names {task.feature!r}, which is not a multi-valued or "
                             f"numeric item feature (have: {', '.join((*item_multi_valued, *item_numeric)) or 'none'})")
        return task.feature
    if not item_multi_valued:
        raise ValueError(f"config field '{field}' is a content task without a feature, and the items have no "
                         "multi-valued column to predict: name one (feature: ...)")
    return GENRES if GENRES in item_multi_valued else item_multi_valued[0]


# === Arrays ===

def target_values(target: Target, frame: pd.DataFrame) -> np.ndarray:
    """The task's target per row, float32, NaN where the row's label is missing (a condition on a missing label
    is missing too)."""
    label = frame[target.label].to_numpy(np.float64)
    missing = ~np.isfinite(label)
    if target.op:
        values = OPERATORS[target.op](np.nan_to_num(label), target.value).astype(np.float64)
    elif target.transform == "log1p":
        values = np.log1p(np.where(missing, 0.0, label))
    else:
        values = label
    return np.where(missing, np.nan, values).astype(np.float32)


def target_arrays(targets: dict[str, Target], frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """``target:<task>`` for each binary and regression task (and 1/0 for a retrieval task's ``positive``
    condition), ``weight:<task>`` for those with sample weights."""
    out: dict[str, np.ndarray] = {}
    for name, target in targets.items():
        if target.type == "retrieval" and target.label:
            out[target_key(name)] = positive_rows(targets, frame).astype(np.float32)
        if not target.ranking:
            continue
        out[target_key(name)] = _chained(targets, name, frame)
        if target.sample_weight:
            weights = frame[target.sample_weight].to_numpy(np.float64)
            out[weight_key(name)] = np.where(np.isfinite(weights), weights, 1.0).astype(np.float32)
    return out


def _chained(targets: dict[str, Target], name: str, frame: pd.DataFrame) -> np.ndarray:
    """A task's target; along a ``given`` chain a missing label is 0 where the given task's target is 0 (no
    purchase without a click): ESMM trains over every exposure, and logs rarely record what cannot happen."""
    values = target_values(targets[name], frame)
    given = targets[name].given
    if given:
        values = np.where(np.isnan(values) & (_chained(targets, given, frame) == 0.0), 0.0, values).astype(np.float32)
    return values


def positive_rows(targets: dict[str, Target], frame: pd.DataFrame) -> np.ndarray:
    """Which rows are retrieval positives (every row unless the retrieval task has a ``positive`` condition)."""
    retrieval = next((t for t in targets.values() if t.type == "retrieval"), None)
    if retrieval is None or not retrieval.label:
        return np.ones(len(frame), dtype=bool)
    label = frame[retrieval.label].to_numpy(np.float64)
    return np.isfinite(label) & OPERATORS[retrieval.op](np.nan_to_num(label), retrieval.value)
