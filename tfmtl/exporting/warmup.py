"""Warmup requests: real rows for every signature, as the ``PredictionLog`` TFRecord TF Serving replays at load.

TF Serving reads ``<version>/assets.extra/tf_serving_warmup_requests`` (at most 1000 records) and fails the
version's load if any request fails, so the same requests also serve as export verification.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfmtl.data.history import HISTORY
from tfmtl.features import FeatureSpace
from tfmtl.serving import signatures as wire

WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit
UNKNOWN_USER = "__tfmtl_unknown_user__"
NEW_ITEM = "__tfmtl_new_item__"
NEW_ITEM_TEXT = "A new film nobody has rated yet"

Request = tuple[str, dict[str, np.ndarray]]  # (signature name, input key -> array)


def sample_requests(space: FeatureSpace, *, user_ids: np.ndarray,
                    user_columns: Mapping[str, np.ndarray], k: int, users: int = 3,
                    candidates: int = 4, histories: Sequence[Sequence[str]] = ()) -> list[Request]:
    """One request per signature from real users and catalog items, plus an unknown user and a new item.

    Known users are sent with their real features and no history (the export's fallback); the unknown user with
    every feature missing; then, for each of ``histories``, the unknown user sending that history (the
    request-time path). Exclusions are the known users' own histories, and the sent histories through
    ``exclude_history``; ``rank`` candidates are catalog items sent by id alone plus one new item with text.
    """
    inputs = wire.signature_inputs(space)
    known = min(users, len(user_ids))
    sent = list(histories) if space.history_length else []
    user_batch = _user_batch(space, user_ids[:known], {c: v[:known] for c, v in user_columns.items()}, sent)
    batch = len(user_batch[wire.USER_ID])
    catalog_items = _catalog_items(space, candidates)
    requests: list[Request] = []
    for name in inputs:
        if name in (wire.RETRIEVE, wire.RETRIEVE_EXCLUDING):
            request = {**user_batch, wire.K: np.full(batch, k, np.int32)}
            if name == wire.RETRIEVE_EXCLUDING:
                history = user_columns.get(HISTORY)
                width = history.shape[1] if history is not None else 1
                exclude = np.full((batch, width), wire.PAD, dtype=object)
                if history is not None:
                    exclude[:known] = history[:known]
                request[wire.EXCLUDE_ITEM_IDS] = exclude
                if space.history_length:
                    request[wire.EXCLUDE_HISTORY] = np.arange(batch) >= batch - len(sent)
        elif name == wire.RANK:
            items = {key: np.stack([value] * batch) for key, value in catalog_items.items()}
            request = {**user_batch, **items}
        elif name == wire.USER_EMBEDDING:
            request = dict(user_batch)
        else:
            request = dict(catalog_items)
        requests.append((name, _as_fields(request, inputs[name])))
    return requests


def _user_batch(space: FeatureSpace, ids: np.ndarray, columns: Mapping[str, np.ndarray],
                histories: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
    """Known users with their features, then the unknown user: once with nothing, once per history it sends."""
    unknown = 1 + len(histories)
    batch: dict[str, np.ndarray] = {wire.USER_ID: np.r_[np.asarray(ids, dtype=object), [UNKNOWN_USER] * unknown]}
    for field in wire.user_inputs(space)[1:]:
        if field.name == wire.HISTORY_ITEM_IDS:
            rows: list[list[str]] = [[]] * (len(ids) + 1) + [list(h) for h in histories]
            batch[field.name] = wire.feature_columns({field.name: (field.dtype, field.shape)},
                                                     [{field.name: r} for r in rows])[field.name]
            continue
        known = (np.asarray(columns[field.name]) if len(ids)
                 else np.zeros((0, *(d or 1 for d in field.shape[1:]))))
        missing = (np.full((unknown, *known.shape[1:]), wire.PAD, dtype=object) if field.dtype == "string"
                   else np.full((unknown, *known.shape[1:]), np.nan, np.float32))
        batch[field.name] = np.concatenate([known.astype(missing.dtype), missing])
    return batch


def _catalog_items(space: FeatureSpace, count: int) -> dict[str, np.ndarray]:
    """``count`` catalog items by id alone (every feature missing), then a new item with text (and, for each vector
    feature, the catalog's mean vector) and no id match."""
    fields = wire.item_inputs(space)
    ids = np.asarray(space.catalog[wire.ITEM_ID], dtype=object)[:count]
    out: dict[str, np.ndarray] = {wire.ITEM_ID: np.r_[ids, [NEW_ITEM]]}
    rows = len(out[wire.ITEM_ID])
    for field in fields[1:]:
        if field.name in space.item_vector:
            vectors = np.full((rows, space.item_vector[field.name]), np.nan, np.float32)
            catalog = np.asarray(space.catalog[field.name], np.float32)
            vectors[-1] = catalog.mean(axis=0) if len(catalog) else 0.0
            out[field.name] = vectors
        elif field.dtype == "float32":
            out[field.name] = np.full(rows, np.nan, np.float32)
        elif len(field.shape) == 2:
            out[field.name] = np.full((rows, 1), wire.PAD, dtype=object)
        else:
            column = np.full(rows, wire.PAD, dtype=object)
            if field.name in space.item_text:
                column[-1] = NEW_ITEM_TEXT
            out[field.name] = column
    return out


def _as_fields(request: dict[str, np.ndarray], fields: list[wire.Field]) -> dict[str, np.ndarray]:
    """Exactly the signature's keys, each in its dtype (a wrong dtype is an error in TF Serving)."""
    out = {}
    for field in fields:
        value = np.asarray(request[field.name])
        out[field.name] = value.astype(object) if field.dtype == "string" else value.astype(field.dtype)
    return out


def predict_request(model_name: str, signature: str, inputs: Mapping[str, np.ndarray], fields: list[wire.Field]):  # type: ignore[no-untyped-def]
    """A ``tensorflow_serving.apis.PredictRequest`` with each tensor in the signature's dtype."""
    from tensorflow_serving.apis import predict_pb2

    dtypes = {f.name: tf.as_dtype(f.dtype) for f in fields}
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value, dtype=dtypes[key]))
    return request


def write_warmup(path: Path, model_name: str, requests: list[Request],
                 fields: Mapping[str, list[wire.Field]]) -> Path:
    """Writes ``requests`` as PredictionLog records (TF Serving's warmup format)."""
    from tensorflow_serving.apis import prediction_log_pb2

    if len(requests) > MAX_WARMUP_RECORDS:
        raise ValueError(f"{len(requests)} warmup requests: TF Serving reads at most {MAX_WARMUP_RECORDS}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in requests:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(
                    request=predict_request(model_name, signature, inputs, fields[signature])))
            writer.write(log.SerializeToString())
    return path


def read_warmup(path: Path) -> list[Request]:
    """The (signature, inputs) of every record; raises ValueError on a record that is not a PredictLog."""
    from tensorflow_serving.apis import prediction_log_pb2

    out: list[Request] = []
    for number, record in enumerate(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()):
        log = prediction_log_pb2.PredictionLog.FromString(record)
        if not log.HasField("predict_log"):
            raise ValueError(f"{path}: record {number} is not a PredictLog")
        request = log.predict_log.request
        out.append((request.model_spec.signature_name or wire.DEFAULT,
                    {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}))
    return out
