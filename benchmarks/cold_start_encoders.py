"""New items, read five ways: which language model earns its place in the item tower?

Catalogs: ``ml-1m-overviews`` (ML-1M whose item text is "Title (Year). Overview" where TMDB has an overview, the
title elsewhere; read up to 128 tokens), Book-Crossing (title and author, as ``cold_start_books.py`` prepares it),
and ``ml-1m-described`` (ml-1m-overviews cut to the movies with an overview and their ratings: every item described).

Protocol (``quality.cold_start_selected``): 20% of the rated items are held out entirely (the test items, every
rating of theirs a test row), the rest follow the TFRS tutorial split; a fifth of the training items is held out of
the selection runs (validation items, disjoint from the test items). Each variant's settings and epochs are chosen
on the validation items, then the chosen setting is trained on every training row once per seed and judged on the
test items against the whole catalog (and among the new items only). Variants, everything else equal:

- ``no_text``: the item tower without text;
- ``no_text_ids``: no text either, but each text column read as a categorical id: on books the author as an id (a
  competent peer's feature, which ``no_text`` lacks), on movies a title per item (no help to a new one);
- ``minilm``: the pretrained MiniLM-L6 (``minilm-l6``), frozen;
- ``minilm_adapted``: MiniLM-L6 after domain-adaptive masked-LM pretraining (``tfmtl pretrain``) on the texts of
  the selection runs' training items only (never a validation or a test item's text), frozen in the recommender;
- ``minilm_l3``: the second packaged encoder, ``paraphrase-minilm-l3``, frozen;
- ``minilm_tuned``: MiniLM-L6 with its top transformer layer trained on the recommendation losses, end to end (as
  MoRec, Yuan et al. 2023): the one variant whose language model learns from the ratings. About 10 minutes an epoch
  on Book-Crossing (every user) on 2 CPU cores, so its full run is ``gpu_cold_start_tuned.sh``'s;
- ``minilm_vector``: no text feature but a ``vector`` feature per text column carrying the same MiniLM-L6
  embeddings, precomputed: a sanity check that should equal ``minilm``;
- ``minilm_vector_ids``: the MiniLM vector and the text columns as ids, as ``no_text_ids`` has them: does the
  language model add anything to the strongest peer's features?
- ``minilm_vector_described``: the MiniLM vector only where the item has a description (ml-1m-overviews: an
  overview), zeros elsewhere, so a bare title is read as no text; on a catalog without that split it is
  ``minilm_vector``.
- ``no_text_described``: no text, but a categorical flag saying whether the item has a description: the control
  for ``minilm_vector_described``, which separates what having an overview says (TMDB's are the better-known films)
  from what the overview says; on a catalog without that split it is ``no_text``.
- ``minilm_vector_flagged``: the MiniLM vector and the flag ``no_text_described`` has: does the text's content add
  to knowing that there is text?
- ``minilm_adapted_vector`` / ``minilm_adapted_vector_flagged``: those vector variants with the adapted encoder's
  embeddings, precomputed once (adapted as for ``minilm_adapted``): the adaptation at the cost of a vector.
- ``bge_vector`` / ``bge_vector_ids`` / ``bge_vector_flagged``: those vector variants with a stronger encoder's
  embeddings, ``bge-small-en-v1.5`` (12 layers where MiniLM-L6 has 6, [CLS] pooling, higher on the MTEB benchmark):
  does a better language model earn more? Its content k-NN among the new items is reported beside MiniLM's.
  ``bge_adapted_vector`` / ``bge_adapted_vector_flagged``: bge after the same domain-adaptive pretraining.

Searched per variant on the validation items: item id dropout 0.1/0.5, and for the text variants the text width
32/128; each selection run trains to the epoch cap without early stopping and is judged at its best epoch.
Reported: new-item recall@100 per seed, mean ± sd, each variant's ratio to ``no_text`` (and to each stronger peer
that ran) per seed and of the means, whether 3× holds in every seed, the adaptation's effect (each adapted variant
− its unadapted twin, e.g. ``minilm_adapted`` − ``minilm``) with its sd and the held-out masked-LM loss, and a
content k-NN over the MiniLM embeddings among the new items, with no training. Where a catalog has kinds of item
(``item_subsets``: movies with and without an overview; books whose author wrote a training book and books by a new
author), each kind's test rows are judged alone as well.

Cost: about 15 trainings per catalog for the search and one per variant and seed; on 2 CPU cores ML-1M takes hours
per training at full size, so ``--users-fraction`` keeps a random share of the users (stated in the JSON) and
``--catalogs``/``--variants`` run parts. A GPU runs it whole.

Run: .venv/bin/python benchmarks/cold_start_encoders.py [--catalogs ml-1m-overviews book-crossing]
        [--variants ...] [--seeds 42 1 2 3 4] [--users-fraction 1.0] [--epochs N] [--pretrain-epochs 3]
        [--item-draw 0]  (seeds vary the training only; another draw holds out other items as the new ones)
Writes benchmarks/results/cold_start_encoders.json and .md (``--name`` names another report, e.g. a full-size run of
a few variants); a run of some catalogs keeps the others already in its report.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# isort: off
import tfmtl  # noqa: F401  (Keras 2 for TFRS, before TensorFlow loads)
from tfmtl.config import Config, TextEncoderConfig
from tfmtl.data import InteractionData, load_dataset
from tfmtl.data.download import cache_root
from tfmtl.encoders.onnx_bert import BGE_SMALL_PRESET
from tfmtl.encoders.pretrain import PretrainConfig, pretrain
from tfmtl.encoders.text import MINILM_PRESET

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cold_start_books import TARGET_RATIO, books_config, prepare, ratio_to  # noqa: E402
import figures  # noqa: E402
from journal import Journal  # noqa: E402
from quality import (RESULTS, _indices, cold_start_selected, content_reference, hold_out_items,  # noqa: E402
                     text_view, validation_items)

# isort: on

CATALOGS = ("ml-1m-overviews", "book-crossing", "ml-1m-described")
DEFAULT_CATALOGS = CATALOGS[:2]
# ml-1m-overviews cut to the movies TMDB describes: a catalog whose every item has a description, where the flag
# saying so is constant and only the overview's content can tell new items apart.
DESCRIBED_ONLY = "ml-1m-described"
# The variants that read the has-a-description flag: on DESCRIBED_ONLY they would be copies of their plain twins.
FLAG_VARIANTS = ("minilm_vector_described", "no_text_described", "minilm_vector_flagged",
                 "minilm_adapted_vector_flagged", "bge_vector_flagged", "bge_adapted_vector_flagged")
VARIANTS = ("no_text", "no_text_ids", "minilm", "minilm_adapted", "minilm_l3", "minilm_tuned", "minilm_vector",
            "minilm_vector_ids", "minilm_vector_described", "no_text_described", "minilm_vector_flagged",
            "minilm_adapted_vector", "minilm_adapted_vector_flagged", "bge_vector", "bge_vector_ids",
            "bge_vector_flagged", "bge_adapted_vector", "bge_adapted_vector_flagged")
# The packaged encoders whose precomputed embeddings the vector variants read (``<name>_adapted`` after a run's own
# domain-adaptive pretraining): preset and pooling; the name is also the vector feature's suffix.
VECTOR_ENCODERS = {"minilm": (MINILM_PRESET, "mean"), "bge": (BGE_SMALL_PRESET, "cls")}
ID_DROPOUTS = (0.1, 0.5)
# minilm_tuned: MiniLM-L6's top transformer layers trained on the recommendation losses, end to end (MoRec's recipe).
TUNED_LAYERS = 1
TEXT_DIMS = (32, 128)
KEY = "retrieval/recall_at_100"
# Peers stronger than no_text, each language-model variant also judged against: the author as an id on books, and
# the flag saying an item has a description (the control for the text's content).
PEERS = ("no_text_ids", "no_text_described")
# Each adapted variant and the same variant unadapted: the adaptation's effect is their difference per seed.
ADAPTED = {"minilm_adapted": "minilm", "minilm_adapted_vector": "minilm_vector",
           "minilm_adapted_vector_flagged": "minilm_vector_flagged", "bge_adapted_vector": "bge_vector",
           "bge_adapted_vector_flagged": "bge_vector_flagged"}
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}


def _log(message: str) -> None:
    print(f"[encoders] {message}", file=sys.stderr, flush=True)


# === Data ===

def load_catalog(name: str, users_fraction: float, epochs: int | None) -> tuple[InteractionData, Config, dict]:
    """The catalog's data (a random ``users_fraction`` of its users, every rating of theirs) and its base config."""
    if name == "book-crossing":
        schema, counts = prepare(cache_root() / "book-crossing")
        data, config = load_dataset(schema), books_config(schema, epochs)
    else:
        source = "ml-1m-overviews" if name == DESCRIBED_ONLY else name
        data, counts = load_dataset(source), {}
        if name == DESCRIBED_ONLY:
            data, counts = only_items(data, described_items(data))
            data = dataclasses.replace(data, name=name, extras={})  # the source's coverage is not this catalog's
        base = Config()
        encoder = dataclasses.replace(base.model.encoder, sequence_length=128)  # overviews run past 32 tokens
        config = dataclasses.replace(base, model=dataclasses.replace(base.model, encoder=encoder),
                                     train=dataclasses.replace(base.train, dataset=source,
                                                               **({"epochs": epochs} if epochs else {})))
    if users_fraction < 1.0:
        users = data.interactions["user_id"].astype(str).unique()
        kept = set(np.random.default_rng(0).choice(users, int(round(len(users) * users_fraction)), replace=False))
        rows = data.interactions["user_id"].astype(str).isin(kept).to_numpy()
        data = dataclasses.replace(data, interactions=data.interactions[rows].reset_index(drop=True),
                                   users=data.users[data.users["user_id"].astype(str).isin(kept)].reset_index(drop=True))
    counts = {"ratings": len(data.interactions), "users": int(data.interactions["user_id"].nunique()),
              "rated_items": int(data.interactions["item_id"].nunique()), "catalog": len(data.items),
              "users_fraction": users_fraction, **({"preparation": counts} if counts else {})}
    return data, config, counts


def described_items(data: InteractionData) -> set[str]:
    """The ml-1m-overviews movies whose text carries a TMDB overview: those whose text is not ml-1m's bare title."""
    bare = load_dataset("ml-1m").items.set_index("item_id")["title"]
    texts = data.items.set_index("item_id")["title"]
    return set(texts.index[texts.to_numpy() != bare.reindex(texts.index).to_numpy()].astype(str))


def only_items(data: InteractionData, kept: set[str]) -> tuple[InteractionData, dict[str, int]]:
    """``data`` cut to the ``kept`` items and their ratings (users left without a rating go too), and what was
    dropped, counted."""
    items = data.items[data.items["item_id"].astype(str).isin(kept)].reset_index(drop=True)
    rows = data.interactions["item_id"].astype(str).isin(kept).to_numpy()
    interactions = data.interactions[rows].reset_index(drop=True)
    users = data.users[data.users["user_id"].astype(str).isin(set(interactions["user_id"].astype(str)))]
    dropped = {"items_dropped": len(data.items) - len(items), "ratings_dropped": int((~rows).sum()),
               "users_dropped": len(data.users) - len(users)}
    _log(f"kept {len(items):,} items and {len(interactions):,} ratings; dropped {dropped}")
    kept_data = dataclasses.replace(data, items=items, interactions=interactions, users=users.reset_index(drop=True))
    return kept_data, dropped


def as_id(values: pd.Series) -> pd.Series:
    """A text column read as a categorical id: case and surrounding spaces do not make another author."""
    return values.fillna("").astype(str).str.strip().str.lower()


def item_subsets(name: str, data: InteractionData, draw: int = 0) -> dict[str, set[str]]:
    """Kinds of item judged alone as well, where the catalog has them. ml-1m-overviews: the movies whose text carries
    a TMDB overview (``described``) and those that keep their bare title (``title_only``): does the language model do
    better where there is text? Book-Crossing: the books whose author wrote a book the final runs train on
    (``known_author``) and the rest (``new_author``): an author id carries over to the first kind only, and only the
    text can say anything about the second."""
    if name == "ml-1m-overviews":
        described = described_items(data)
        return {"described": described, "title_only": set(data.items["item_id"].astype(str)) - described}
    if name == "book-crossing":
        split, _ = hold_out_items(data, draw=draw)
        authors = pd.Series(as_id(data.items["author"]).to_numpy(), index=data.items["item_id"].astype(str))
        trained_on = data.interactions["item_id"].astype(str).iloc[split.train].unique()
        known = authors.isin(set(authors.reindex(trained_on)))
        return {"known_author": set(authors.index[known]), "new_author": set(authors.index[~known])}
    return {}


def text_columns(data: InteractionData, config: Config) -> tuple[str, ...]:
    return tuple(config.model.text_features if config.model.text_features is not None else data.item_features.text)


def minilm_views(data: InteractionData, config: Config, columns: tuple[str, ...],
                 preset: str = MINILM_PRESET, pooling: str = "mean") -> dict[str, np.ndarray]:
    """Text column -> the frozen MiniLM-L6 (or ``preset``'s) embedding of each item's text [items, 384], read as far
    as the model reads it, computed once per catalog."""
    length = config.model.encoder.sequence_length
    return {column: text_view(data.items[column].fillna(""), length, preset, pooling) for column in columns}


def encoder_views(data: InteractionData, config: Config, columns: tuple[str, ...],
                  variants: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Each packaged encoder the ``variants`` read as vectors (always MiniLM-L6, which the content k-NN reads) ->
    its views (:func:`minilm_views`)."""
    needed = {"minilm"} | ({vector_source(v) for v in variants if is_vector(v)} & set(VECTOR_ENCODERS))
    return {source: minilm_views(data, config, columns, *VECTOR_ENCODERS[source]) for source in sorted(needed)}


def with_vectors(data: InteractionData, views: dict[str, np.ndarray], only: set[str] | None = None,
                 suffix: str = "minilm") -> InteractionData:
    """The items with a ``<column>_<suffix>`` vector per text column: its embedding (MiniLM-L6's, or the encoder
    ``suffix`` names), precomputed; with ``only``, zeros for every other item (no content to read)."""
    items = data.items.copy()
    vectors = {}
    if only is not None:
        kept = items["item_id"].astype(str).isin(only).to_numpy()[:, None]
        views = {column: np.where(kept, embedded, 0.0) for column, embedded in views.items()}
    for column, embedded in views.items():
        items[f"{column}_{suffix}"] = list(embedded.astype(np.float32))
        vectors[f"{column}_{suffix}"] = embedded.shape[1]
    features = dataclasses.replace(data.item_features, vector={**data.item_features.vector, **vectors})
    return dataclasses.replace(data, items=items, item_features=features)


def with_text_as_ids(data: InteractionData, columns: tuple[str, ...]) -> InteractionData:
    """The items with each text column also a categorical feature (``<column>_id``): an author seen in training
    carries over to their new books; a value never seen in training is the unknown id."""
    items = data.items.copy()
    for column in columns:
        items[f"{column}_id"] = as_id(items[column])
    categorical = (*data.item_features.categorical, *(f"{column}_id" for column in columns))
    return dataclasses.replace(data, items=items,
                               item_features=dataclasses.replace(data.item_features, categorical=categorical))


def with_described_flag(data: InteractionData, described: set[str] | None) -> InteractionData:
    """The items with a categorical ``described`` flag ("yes" where the item has a description, "no" elsewhere):
    whether there is text, without the text."""
    if described is None:
        return data
    items = data.items.copy()
    items["described"] = np.where(items["item_id"].astype(str).isin(described), "yes", "no")
    categorical = (*data.item_features.categorical, "described")
    return dataclasses.replace(data, items=items,
                               item_features=dataclasses.replace(data.item_features, categorical=categorical))


# === Variants ===

def variants_for(catalog: str, variants: list[str]) -> tuple[list[str], list[str]]:
    """The variants that run on ``catalog`` and those skipped: on DESCRIBED_ONLY a flag variant would be a copy of
    its plain twin (the flag is constant)."""
    skipped = [v for v in variants if v in FLAG_VARIANTS] if catalog == DESCRIBED_ONLY else []
    return [v for v in variants if v not in skipped], skipped


def variant_settings(variant: str, config: Config, adapted: Path | None, id_dropouts: tuple[float, ...] = ID_DROPOUTS,
                     text_dims: tuple[int, ...] = TEXT_DIMS, encoder_rate: float | None = None) -> dict[str, Config]:
    """Setting label -> config: the search this variant gets on the validation items (``encoder_rate``: the
    fine-tuned encoder's learning rate, ``minilm_tuned``'s; None: the towers')."""
    def setting(dropout: float, text_dim: int | None, preset: str | None, trainable_layers: int = 0) -> Config:
        tower = dataclasses.replace(config.model.item_tower, id_dropout=dropout,
                                    **({"text_dim": text_dim} if text_dim else {}))
        model = dataclasses.replace(config.model, item_tower=tower)
        if preset is None:  # no text column for the encoder: the item tower reads ids and side features (and vectors)
            model = dataclasses.replace(model, text_features=(), history_text=False)
        else:
            model = dataclasses.replace(model, encoder=dataclasses.replace(model.encoder, preset=preset,
                                                                           trainable_layers=trainable_layers))
        # No early stopping: each setting's best epoch is read over the whole budget (with a patience of 3, text
        # runs on Book-Crossing stopped at epoch 4, after the dip that follows their first epoch).
        rate = encoder_rate if trainable_layers else None
        return dataclasses.replace(config, model=model, train=dataclasses.replace(
            config.train, patience=0, encoder_learning_rate=rate))

    preset = {"minilm": "minilm-l6", "minilm_adapted": str(adapted), "minilm_l3": "paraphrase-minilm-l3",
              "minilm_tuned": "minilm-l6"}.get(variant)
    tuned = TUNED_LAYERS if variant == "minilm_tuned" else 0
    if variant.startswith("no_text") or is_vector(variant):
        widths: tuple[int | None, ...] = text_dims if is_vector(variant) else (None,)
        return {f"item id dropout {p}" + (f", vector width {d}" if d else ""): setting(p, d, None)
                for p in id_dropouts for d in widths}
    return {f"item id dropout {p}, text width {d}": setting(p, d, preset, tuned)
            for p in id_dropouts for d in text_dims}


def variant_data(variant: str, data: InteractionData, columns: tuple[str, ...],
                 views: dict[str, dict[str, np.ndarray]], described: set[str] | None) -> InteractionData:
    """``data`` with what ``variant`` reads beyond ids and side features: precomputed vectors (``views`` of the
    encoder :func:`vector_source` names; only the described items' with ``minilm_vector_described``), the text
    columns as ids, the has-a-description flag."""
    only = described if variant == "minilm_vector_described" else None
    source = vector_source(variant)
    prepared = (with_vectors(data, views[source], only, suffix=source.removesuffix("_adapted"))
                if is_vector(variant) else data)
    prepared = with_text_as_ids(prepared, columns) if variant.endswith("_ids") else prepared
    flagged = variant == "no_text_described" or variant.endswith("_flagged")
    return with_described_flag(prepared, described) if flagged else prepared


def is_vector(variant: str) -> bool:
    """Whether the variant reads precomputed embeddings as a ``vector`` feature instead of running an encoder."""
    return "_vector" in variant


def vector_source(variant: str) -> str:
    """Whose embeddings a vector variant reads: ``minilm``, ``minilm_adapted``, ``bge`` or ``bge_adapted``."""
    return variant.split("_vector")[0]


def adapt_encoder(data: InteractionData, columns: tuple[str, ...], training_items: set[str], epochs: int,
                  folder: Path, preset: str = MINILM_PRESET, pooling: str = "mean") -> tuple[Path, dict[str, Any]]:
    """``tfmtl pretrain`` of ``preset`` on the distinct texts of ``training_items``: the adapted preset and its
    held-out losses."""
    items = data.items[data.items["item_id"].astype(str).isin(training_items)]
    texts = sorted({str(t) for column in columns for t in items[column].dropna() if str(t).strip()})
    encoder = TextEncoderConfig(preset=preset, sequence_length=128, trainable_layers=-1, pooling=pooling)
    config = PretrainConfig(encoder=encoder, epochs=epochs)
    report = pretrain(texts, config, folder, progress=False)
    _log(f"{preset} adapted on {len(texts)} texts: held-out masked-LM loss {report['adapted']['held_out_loss']} "
         f"(head only on the frozen encoder: {report['unadapted']['held_out_loss']})")
    return folder / "preset", {"texts": report["texts"], "epochs": epochs,
                               "held_out_loss_adapted": report["adapted"]["held_out_loss"],
                               "held_out_loss_head_only": report["unadapted"]["held_out_loss"]}


def content_knn(data: InteractionData, views: dict[str, np.ndarray], draw: int = 0) -> dict[str, object]:
    """The content k-NN over ``views`` (an encoder's embeddings) among the test items, with no training: each
    user's profile the sum of their training items' embeddings."""
    split, held_out = hold_out_items(data, draw=draw)
    user_index, item_index, num_users, num_items = _indices(data)
    seen = np.zeros((num_users, num_items), dtype=bool)
    seen[user_index[split.train], item_index[split.train]] = True
    is_new = np.isin(data.items["item_id"].astype(str).to_numpy(), sorted(held_out))
    return content_reference(views, (tuple(views),), seen, is_new, user_index, item_index, split.test)


# === One catalog ===

def run_catalog(name: str, variants: list[str], seeds: list[int], args: argparse.Namespace,
                workdir: Path, journal: Journal) -> dict[str, Any]:
    data, config, counts = load_catalog(name, args.users_fraction, args.epochs)
    columns = text_columns(data, config)
    _log(f"{name}: {counts}; text columns {columns}")
    if args.item_draw:  # in the data counts, so that reports of different draws never join
        counts = {**counts, "item_draw": args.item_draw}
    out: dict[str, Any] = {"data": counts, "text_columns": list(columns), "variants": {}}
    views = encoder_views(data, config, columns, variants)
    subsets = item_subsets(name, data, args.item_draw)
    if subsets:
        out["subsets"] = {label: len(items) for label, items in subsets.items()}
    to_adapt = {source: encoder for source, encoder in VECTOR_ENCODERS.items()
                if any(v.startswith(f"{source}_adapted") for v in variants)}
    adapted_folders: dict[str, Path] = {}
    if to_adapt:  # adapted on the selection runs' training items only
        split, _ = hold_out_items(data, draw=args.item_draw)
        training_items = set(data.interactions["item_id"].astype(str).iloc[validation_items(data, split, 0.2).train])
    for source, (preset, pooling) in to_adapt.items():
        folder, out[adaptation_key(source)] = adapt_encoder(data, columns, training_items, args.pretrain_epochs,
                                                            workdir / f"{name}-{source}-pretrain", preset, pooling)
        adapted_folders[source] = folder
        if any(v.startswith(f"{source}_adapted_vector") for v in variants):
            views[f"{source}_adapted"] = minilm_views(data, config, columns, str(folder), pooling)
    adapted = adapted_folders.get("minilm")  # what the in-model variant minilm_adapted reads
    described = subsets.get("described")
    variants, skipped = variants_for(name, variants)
    if skipped:
        _log(f"{name}: skipping {', '.join(skipped)}: every item is described, so the flag is constant")
        out["skipped_variants"] = skipped
    for variant in variants:
        prepared = variant_data(variant, data, columns, views, described)
        settings = variant_settings(variant, config, adapted, tuple(args.id_dropouts), tuple(args.text_dims),
                                    args.encoder_rate)
        cold = cold_start_selected(prepared, {variant: settings}, seeds, workdir / f"{name}-{variant}",
                                   journal=journal, subsets=subsets, draw=args.item_draw)
        out["variants"][variant] = cold[variant]
        out.update({k: cold[k] for k in ("held_out_items", "cold_test_rows", "validation_items", "validation_rows")})
        _log(f"{name} {variant}: new-item recall@100 {cold[variant][KEY]['values']}")
    out["content_knn_among_new_items"] = content_knn(data, views["minilm"], args.item_draw)
    if "bge" in views:
        out["content_knn_among_new_items_bge"] = content_knn(data, views["bge"], args.item_draw)
    return with_ratios(out)


def with_ratios(out: dict[str, Any]) -> dict[str, Any]:
    """``out`` with every variant's ratios to no_text, and to each stronger peer that ran."""
    out = {**out, "ratios_to_no_text": ratios(out["variants"])}
    for peer in PEERS:
        if peer in out["variants"]:
            out[f"ratios_to_{peer}"] = ratios(out["variants"], base=peer)
    return out


def adaptation_key(source: str) -> str:
    """Where a catalog keeps the adaptation of ``source``'s encoder (MiniLM's key predates the others)."""
    return "adaptation" + ("" if source == "minilm" else f"_{source}")


def effect_key(adapted: str) -> str:
    """Where the ratios keep an adapted variant's effect (the first one's key predates the others)."""
    return "adaptation_effect" + ("" if adapted == "minilm_adapted" else f"_{adapted}")


def ratios(variants: dict[str, Any], base: str = "no_text") -> dict[str, Any]:
    """Each variant's recall@100 over ``base``'s, per seed and of the means, and whether 3× holds in every seed."""
    if base not in variants:
        return {}
    out = {variant: ratio_to(row[KEY]["values"], variants[base][KEY]["values"])
           for variant, row in variants.items() if variant != base}
    for adapted, unadapted in ADAPTED.items() if base == "no_text" else ():
        if {adapted, unadapted} <= set(variants):
            effect = [a - b for a, b in zip(variants[adapted][KEY]["values"], variants[unadapted][KEY]["values"],
                                            strict=False)]
            out[effect_key(adapted)] = {"per_seed": effect, "mean": float(np.mean(effect)),
                                        "sd": float(statistics.stdev(effect)) if len(effect) > 1 else 0.0}
    return out


# === Report ===

GIVEN = {"no_text": "ids and side features, no text",
         "no_text_ids": "ids and side features, each text column as a categorical id (the author on books)",
         "minilm": "the item text through the pretrained MiniLM-L6, frozen",
         "minilm_adapted": "the item text through MiniLM-L6 after masked-LM pretraining on the selection runs' "
                           "training items' texts, frozen",
         "minilm_l3": "the item text through paraphrase-MiniLM-L3, frozen",
         "minilm_tuned": "the item text through MiniLM-L6, its top layer trained on the recommendation losses",
         "minilm_vector": "no text feature; the MiniLM-L6 embedding of the same text as a precomputed vector",
         "minilm_vector_ids": "the MiniLM-L6 vector and each text column as a categorical id",
         "minilm_vector_described": "the MiniLM-L6 vector where the item has a description, zeros elsewhere",
         "minilm_vector_flagged": "the MiniLM-L6 vector and a flag saying whether the item has a description",
         "minilm_adapted_vector": "the adapted MiniLM-L6's embedding of the text as a precomputed vector",
         "minilm_adapted_vector_flagged": "the adapted MiniLM-L6's vector and the description flag",
         "no_text_described": "ids and side features, no text, and a flag saying whether the item has a description",
         "bge_vector": "no text feature; the bge-small-en-v1.5 embedding of the same text as a precomputed vector",
         "bge_vector_ids": "the bge-small-en-v1.5 vector and each text column as a categorical id",
         "bge_vector_flagged": "the bge-small-en-v1.5 vector and the description flag",
         "bge_adapted_vector": "bge-small-en-v1.5 after masked-LM pretraining as minilm_adapted's, its embedding of "
                               "the text as a precomputed vector",
         "bge_adapted_vector_flagged": "the adapted bge-small-en-v1.5's vector and the description flag"}


def protocol(args: argparse.Namespace) -> dict[str, object]:
    """The JSON's record of the protocol: the split, the seeds, what each variant reads, the search, the sizes."""
    return figures.protocol(
        "20% of the rated items held out entirely (test items, judged against the whole catalog"
        + (f"; item draw {args.item_draw}" if args.item_draw else "") + "); the rest follow the TFRS tutorial split",
        seeds=list(args.seeds),
        validation="a fifth of the training items held out of the selection runs; every variant's settings and "
                   "epochs chosen on their rows (each selection run trains to the epoch cap, no early stopping)",
        search={"item_id_dropout": list(args.id_dropouts), "text_width": list(args.text_dims)},
        given={variant: GIVEN[variant] for variant in args.variants},
        sizes="a random share of each catalog's users, every rating of theirs (its data.users_fraction); "
              f"pretraining {args.pretrain_epochs} epoch(s)"
              + (f"; at most {args.epochs} epochs" if args.epochs else "")
              + (f"; the tuned encoder's learning rate {args.encoder_rate:g}" if args.encoder_rate else ""))


def markdown(results: dict[str, Any]) -> str:
    read = {len(out["variants"]) for out in results["catalogs"].values()}
    ways = NUMBERS.get(max(read, default=0), "several")
    ways += " way" if ways == "one" else " ways"
    lines = [f"# New items, read {ways} (recall@100 of the test items against the whole catalog)", "",
             f"Settings chosen on validation items (item id dropout {_listed(results, 'item_id_dropout')}; text width "
             f"{_listed(results, 'text_width')}); seeds {results['seeds']}; target: ≥ {TARGET_RATIO:g}× no_text "
             "in every seed" + (f"; not judged here: at most {cap} epochs, a pilot's budget, leaves the models "
                                "short of trained." if (cap := results.get("epochs_cap")) else "."), ""]
    for catalog, out in results["catalogs"].items():
        counts = out["data"]
        lines += [f"## {catalog}", "",
                  f"{counts['ratings']:,} ratings by {counts['users']:,} users ({_share(counts['users_fraction'])}) of "
                  f"{counts['rated_items']:,} items in a catalog of {counts['catalog']:,}; "
                  f"{out.get('held_out_items', 0):,} test items"
                  + (f" (item draw {counts['item_draw']})" if counts.get("item_draw") else "")
                  + f", {out.get('validation_items', 0):,} validation items; "
                  f"text: {', '.join(out['text_columns'])}.", "",
                  "| variant | chosen (epochs) | recall@100 | per seed | × no_text per seed | 3× every seed "
                  "| new items only: recall@100 |",
                  "|---|---|---|---|---|---|---|"]
        for variant, row in out["variants"].items():
            ratio = out["ratios_to_no_text"].get(variant, {})
            per_seed = _per_seed(ratio)
            is_peer = variant.startswith("no_text")  # the target is the language model's, not a peer's
            holds = "" if not ratio or is_peer else ("yes" if ratio["holds_every_seed"] else "NO")
            holds = "not judged" if holds and results.get("epochs_cap") else holds
            among = row["among_new_items"][KEY]
            lines.append(f"| {variant} | {row['chosen']} ({row['epochs']}) | {row[KEY]['mean']:.4f} ± "
                         f"{row[KEY]['sd']:.4f} | " + ", ".join(f"{v:.4f}" for v in row[KEY]["values"])
                         + f" | {per_seed} | {holds} | {among['mean']:.4f} ± {among['sd']:.4f} |")
        lines += _against_stronger_peer(out)
        lines += _by_subset(out)
        lines += ["", "Validation recall@100 of every setting searched (its best epoch):", "",
                  "| variant | setting | validation recall@100 | epoch |", "|---|---|---|---|"]
        lines += [f"| {variant} | {label} | {scores['validation']:.4f} | {scores['epoch']} |"
                  for variant, row in out["variants"].items() for label, scores in row["selection"].items()]
        for adapted, unadapted in ADAPTED.items():
            effect = out["ratios_to_no_text"].get(effect_key(adapted))
            if effect:
                pair = "" if adapted == "minilm_adapted" else f" ({adapted} − {unadapted})"
                lines += ["", f"Adaptation's effect on recall@100{pair}: {effect['mean']:+.4f} ± {effect['sd']:.4f} "
                          "(per seed " + ", ".join(f"{v:+.4f}" for v in effect["per_seed"]) + ")."]
        for source in VECTOR_ENCODERS:
            a = out.get(adaptation_key(source))
            if a:
                epochs = f"{a['epochs']} epoch{'' if a['epochs'] == 1 else 's'}"
                encoder = "" if source == "minilm" else f" of {VECTOR_ENCODERS[source][0]}"
                lines += ["", f"Adaptation{encoder}: {epochs} on {a['texts']['train']:,} texts; held-out masked-LM "
                          f"loss {a['held_out_loss_adapted'][-1]:.3f} adapted against "
                          f"{a['held_out_loss_head_only'][-1]:.3f} for a head trained alone on the frozen encoder."]
        lines += _against_content_knn(out)
        lines.append("")
    return "\n".join(lines)


def _against_content_knn(out: dict[str, Any]) -> list[str]:
    """The training-free content k-NN of each encoder among the new items, and the best variant reading that encoder
    there (the MiniLM line: every language-model variant but bge's, as before bge ran)."""
    lines = []
    for key, encoder, is_bge, reader in (("content_knn_among_new_items", "MiniLM", False, "language-model variant"),
                                         ("content_knn_among_new_items_bge", "bge-small-en-v1.5", True, "bge variant")):
        knn = next(iter(out.get(key, {}).values()), {})
        if not knn:
            continue
        text_rows = {v: row["among_new_items"][KEY] for v, row in out["variants"].items()  # the peers read no text
                     if not v.startswith("no_text") and v.startswith("bge") == is_bge}
        best = max(text_rows, key=lambda v: text_rows[v]["mean"], default=None)
        lines += ["", f"Content k-NN over the {encoder} embeddings, among the new items only, no training: "
                  f"recall@100 {knn.get(KEY, float('nan')):.4f}"
                  + (f"; the best {reader} there, {best}, {text_rows[best]['mean']:.4f} (every seed above the "
                     f"k-NN: {'yes' if min(text_rows[best]['values']) > knn[KEY] else 'no'})." if best else ".")]
    return lines


def _per_seed(ratio: dict[str, Any]) -> str:
    return ", ".join("–" if r is None else f"{r:.2f}×" for r in ratio.get("per_seed", []))


def _against_stronger_peer(out: dict[str, Any]) -> list[str]:
    """Each language-model variant over each stronger peer that ran, per seed."""
    lines = []
    for peer in PEERS:
        for variant, ratio in out.get(f"ratios_to_{peer}", {}).items():
            if variant.startswith("no_text"):
                continue
            per_seed = _per_seed(ratio)
            lines.append(f"- {variant} over {peer}: {ratio['of_means']:.2f}× of the means (per seed {per_seed}); "
                         f"3× in every seed: {'yes' if ratio['holds_every_seed'] else 'NO'}.")
    return ["", *lines] if lines else []


def _by_subset(out: dict[str, Any]) -> list[str]:
    """The test rows of each text subset (e.g. movies with an overview) judged alone, every variant."""
    if "subsets" not in out:
        return []
    lines = ["", "The test rows of each kind of item judged alone (recall@100 against the whole catalog; among the "
             "new items only):", "", "| items | test rows | variant | recall@100 | × no_text per seed | "
             "new items only |", "|---|---|---|---|---|---|"]
    base = out["variants"].get("no_text", {}).get("subsets", {})
    for subset, catalog_items in out["subsets"].items():
        for variant, row in out["variants"].items():
            judged = row.get("subsets", {}).get(subset)
            if not judged or KEY not in judged:
                continue
            ratio = (ratio_to(judged[KEY]["values"], base[subset][KEY]["values"])
                     if variant != "no_text" and subset in base else None)
            per_seed = _per_seed(ratio or {})
            among = judged["among_new_items"][KEY]
            lines.append(f"| {subset} ({catalog_items:,} in the catalog) | {judged['test_rows']:,} | {variant} | "
                         f"{judged[KEY]['mean']:.4f} ± {judged[KEY]['sd']:.4f} | {per_seed} | "
                         f"{among['mean']:.4f} ± {among['sd']:.4f} |")
    return lines + _subsets_against_peers(out)


def _subsets_against_peers(out: dict[str, Any]) -> list[str]:
    """On each subset, each language-model variant over each stronger peer that ran, per seed."""
    lines = []
    for peer in (p for p in PEERS if p in out["variants"]):
        judged_peer = out["variants"][peer].get("subsets", {})
        for subset in out["subsets"]:
            for variant, row in out["variants"].items():
                judged = row.get("subsets", {}).get(subset, {})
                if variant.startswith("no_text") or KEY not in judged or KEY not in judged_peer.get(subset, {}):
                    continue
                ratio = ratio_to(judged[KEY]["values"], judged_peer[subset][KEY]["values"])
                lines.append(f"- {subset}: {variant} over {peer}: {ratio['of_means']:.2f}× of the means "
                             f"(per seed {_per_seed(ratio)}).")
    return ["", *lines] if lines else []


def earlier_catalogs(path: Path, results: dict[str, Any], running: list[str]) -> dict[str, Any]:
    """The catalogs an earlier run of the same protocol wrote to ``path`` and this run does not redo.

    Catalogs run one at a time (hours each on 2 cores) then share one report. Each catalog's users fraction is in
    its own data counts, so catalogs run at different sizes can share it."""
    kept = {name: out for name, out in _same_protocol(path, results).items() if name not in running}
    if kept:
        _log(f"{path}: keeping the earlier run's {', '.join(kept)}")
    return kept


def _same_protocol(path: Path, results: dict[str, Any]) -> dict[str, Any]:
    """Every catalog of the report at ``path`` if it ran with this run's seeds, search and budgets, else none."""
    if not path.exists():
        return {}
    earlier = json.loads(path.read_text())
    differ = [key for key in ("seeds", "search", "pretrain_epochs", "epochs_cap", "encoder_rate")
              if earlier.get(key) != results.get(key)]
    if differ:
        _log(f"{path}: an earlier run with another {', '.join(differ)}; its catalogs are replaced")
        return {}
    return earlier.get("catalogs", {})


def with_earlier_variants(path: Path, results: dict[str, Any], catalog: str, out: dict[str, Any]) -> dict[str, Any]:
    """``out`` with the variants an earlier run of the same protocol wrote for this catalog on the very same data and
    split (a run of one more variant joins the report of the others); its ratios are worked out again."""
    kept = _same_protocol(path, results).get(catalog)
    same = ("data", "held_out_items", "cold_test_rows", "validation_items", "validation_rows")
    if not kept or any(kept.get(key) != out.get(key) for key in same):
        return out
    if "subsets" in kept and kept["subsets"] != out.get("subsets"):  # a run before subsets were judged joins too
        return out
    earlier = {variant: row for variant, row in kept["variants"].items() if variant not in out["variants"]}
    if not earlier:
        return out
    _log(f"{catalog}: keeping the earlier run's {', '.join(earlier)} (same data and split)")
    carried = {key: kept[key] for key in (*map(adaptation_key, VECTOR_ENCODERS), "content_knn_among_new_items_bge")
               if key in kept}
    return with_ratios({**carried, **out, "variants": {**earlier, **out["variants"]}})


def _share(users_fraction: float) -> str:
    return "every one" if users_fraction >= 1.0 else f"a random {users_fraction:g} of them"


def _listed(results: dict[str, Any], name: str) -> str:
    default = {"item_id_dropout": ID_DROPOUTS, "text_width": TEXT_DIMS}[name]
    return "/".join(f"{v:g}" for v in results.get("search", {}).get(name, default))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalogs", nargs="+", choices=CATALOGS, default=list(DEFAULT_CATALOGS))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3, 4])
    parser.add_argument("--users-fraction", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, help="cap the epochs (smoke runs)")
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--id-dropouts", type=float, nargs="+", default=list(ID_DROPOUTS),
                        help="item id dropouts searched on validation items")
    parser.add_argument("--text-dims", type=int, nargs="+", default=list(TEXT_DIMS),
                        help="text (and vector) widths searched on validation items")
    parser.add_argument("--encoder-rate", type=float,
                        help="minilm_tuned's encoder learning rate (train.encoder_learning_rate; default: the towers')")
    parser.add_argument("--item-draw", type=int, default=0,
                        help="which items are new (the seed of their draw); training seeds do not move it")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--name", help="the report's file name, without suffix (default: cold_start_encoders, "
                                       "with _draw_<n> for another item draw)")
    args = parser.parse_args()
    # Another draw never writes over the first draw's report: their catalogs would mix draws.
    args.name = args.name or "cold_start_encoders" + (f"_draw_{args.item_draw}" if args.item_draw else "")

    results: dict[str, Any] = {"protocol": protocol(args), "seeds": args.seeds,
                               "search": {"item_id_dropout": args.id_dropouts, "text_width": args.text_dims},
                               "pretrain_epochs": args.pretrain_epochs, "epochs_cap": args.epochs,
                               **({"encoder_rate": args.encoder_rate} if args.encoder_rate is not None else {})}
    args.output.mkdir(parents=True, exist_ok=True)

    def report(suffix: str) -> Path:  # a name may hold a dot ("..._users_0.3"), which with_suffix would cut
        return args.output / f"{args.name}{suffix}"

    results["catalogs"] = earlier_catalogs(report(".json"), results, args.catalogs)
    # Each finished training is journaled: the same command after a stop resumes (the adapted encoder's runs
    # excepted: its pretraining is redone, so their configs name a new encoder folder and run again).
    journal = Journal(report(".journal.jsonl"))
    with tempfile.TemporaryDirectory(prefix="tfmtl-encoders-") as folder:
        for catalog in args.catalogs:
            out = run_catalog(catalog, args.variants, args.seeds, args, Path(folder), journal)
            results["catalogs"][catalog] = with_earlier_variants(report(".json"), results, catalog, out)
            # Written after every catalog: a long benchmark that stops early keeps what it measured.
            report(".json").write_text(json.dumps(results, indent=2) + "\n")
            report(".md").write_text(markdown(results))
    journal.close()
    print(markdown(results))


if __name__ == "__main__":
    main()
