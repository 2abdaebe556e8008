"""A typed gRPC client for tfmtl models served by TF Serving (or the local server), over tensorflow-serving-api.

```python
with Client("localhost:8500", "movielens", timeout=5) as client:
    for item in client.recommend("42", k=10):
        print(item.title, item.score)
```

Inputs are sent in the exact dtypes of the model's signatures, read from GetModelMetadata (again when the served
version changes, and once when the server refuses a request as INVALID_ARGUMENT: a hot swap may change a
signature); user or item features you leave out are sent as *missing* (see ``serving.signatures``), so a known
user needs only its id. A precomputed vector feature (e.g. ``{"item_id": "new", "clip": np.ndarray [512]}``) is a
numpy array or sequence of exactly the model's dim (read from the signature; another length is refused here, before
any RPC).

Every call has one deadline, ``timeout`` seconds, that its attempts and backoff share (an attempt gets what is
left, at most ``attempt_timeout``). UNAVAILABLE and CANCELLED are retried with exponential backoff and jitter
(these calls block, so this client never cancels one: a CANCELLED is a server or proxy dropping the call, as a
server shutting down does to calls it has not started); DEADLINE_EXCEEDED only with
``retry_deadline_exceeded=True`` (the server may still be computing the slow attempt). All these RPCs are reads, so
idempotent. Errors become :mod:`tfmtl.serving.errors`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfmtl.serving import signatures as wire
from tfmtl.serving.errors import InvalidArgumentError, ServingError, from_rpc_error
from tfmtl.serving.tensors import to_array, to_proto

STATES = {0: "UNKNOWN", 10: "START", 20: "LOADING", 30: "AVAILABLE", 40: "UNLOADING", 50: "END"}


# === Typed results ===

@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    title: str | None = None


@dataclass(frozen=True)
class Recommendations:
    """One user's top items, best first; ``version`` is the model version that answered; ``history_dropped``:
    the sent history's older items the model did not read (it reads the newest H)."""

    user_id: str
    items: tuple[Recommendation, ...]
    version: int
    history_dropped: int = 0

    def __iter__(self) -> Iterator[Recommendation]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Recommendation:
        return self.items[index]

    @property
    def item_ids(self) -> list[str]:
        return [item.item_id for item in self.items]


@dataclass(frozen=True)
class RankedItem:
    """A candidate with each ranking output: ``retrieval_score``, ``<task>`` per regression task and
    ``<task>_probability`` per binary task (the preset's: ``rating``, ``like_probability``)."""

    item_id: str
    scores: dict[str, float]


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int | None, ...]


@dataclass(frozen=True)
class SignatureInfo:
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    version: int
    signatures: dict[str, SignatureInfo] = field(repr=False)


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str
    error_code: int
    error_message: str


User = str | Mapping[str, Any]
Item = str | Mapping[str, Any]
History = Sequence[str] | Sequence[Sequence[str]] | None  # item ids, oldest first (one list per user for many)


class Client:
    """See the module docstring. ``version`` or ``version_label`` pins a version (default: the newest loaded; with
    TF Serving's stable/canary labels, pass ``version_label="stable"`` to stay off the canary)."""

    def __init__(self, address: str, model_name: str, *, timeout: float = 10.0, version: int | None = None,
                 version_label: str | None = None, retries: int = 3, backoff: float = 0.1, max_backoff: float = 2.0,
                 attempt_timeout: float | None = None, retry_deadline_exceeded: bool = False,
                 max_message_bytes: int = 64 << 20, credentials: grpc.ChannelCredentials | None = None) -> None:
        if version is not None and version_label is not None:
            raise ValueError("pass version or version_label, not both")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
        if attempt_timeout is not None and attempt_timeout <= 0:
            raise ValueError(f"attempt_timeout must be positive seconds or None, got {attempt_timeout!r}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries!r}")
        self.address, self.model_name = address, model_name
        self.timeout, self.retries, self.backoff, self.max_backoff = float(timeout), retries, backoff, max_backoff
        self.attempt_timeout, self.retry_deadline_exceeded = attempt_timeout, retry_deadline_exceeded
        self.version, self.version_label = version, version_label
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        self._channel = (grpc.secure_channel(address, credentials, options) if credentials is not None
                         else grpc.insecure_channel(address, options))
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._metadata: ModelMetadata | None = None
        self._stale = False  # a response came from another version than the cached metadata's

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- model information ---

    def metadata(self, *, refresh: bool = False) -> ModelMetadata:
        """The signatures (inputs, outputs, dtypes, shapes) of the served version; cached."""
        if self._metadata is None or refresh or self._stale:
            self._stale = False
            request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            self._spec(request.model_spec)
            response = self._call("GetModelMetadata", self._predictions.GetModelMetadata, request)
            signatures = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(signatures)
            self._metadata = ModelMetadata(
                name=response.model_spec.name, version=response.model_spec.version.value,
                signatures={name: SignatureInfo(inputs=_infos(d.inputs), outputs=_infos(d.outputs))
                            for name, d in signatures.signature_def.items() if not name.startswith("__")})
        return self._metadata

    def status(self) -> list[VersionStatus]:
        """Each known version's state (AVAILABLE, LOADING, END, ...) and error, newest first."""
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model_name
        if self.version is not None:
            request.model_spec.version.value = self.version
        response = self._call("GetModelStatus", self._models.GetModelStatus, request)
        return sorted((VersionStatus(s.version, STATES.get(s.state, str(s.state)), s.status.error_code,
                                     s.status.error_message) for s in response.model_version_status),
                      key=lambda s: -s.version)

    # --- the signatures, typed ---

    def recommend(self, user: User | Sequence[User], k: int = 10, *, history: History = None) -> Any:
        """Top ``k`` items for one user (-> Recommendations) or a list of users (-> list of them).

        A user is an id string or a dict of features (``user_id`` plus any of the model's user features).
        ``history``: the user's recent item ids, oldest first (one list per user for a list of users); the model
        reads them instead of its snapshot, so new behaviour counts at once and a new user is served by it.
        """
        users, single = _many(user)
        rows = _with_history(users, history, single)
        return self._fresh(lambda: self._recommend(wire.RETRIEVE, rows, k, {}, single))

    def recommend_excluding(self, user: User | Sequence[User], exclude: Sequence[str] | Sequence[Sequence[str]] = (),
                            k: int = 10, *, history: History = None, exclude_history: bool = False) -> Any:
        """Like :meth:`recommend`, never returning the ``exclude`` item ids (one list of ids for every user, or
        one list per user), nor, with ``exclude_history``, the items of the history the model read."""
        users, single = _many(user)
        lists = _exclusion_lists(exclude, len(users), single)
        width = max([1, *map(len, lists)])
        padded = np.array([[str(i) for i in row] + [wire.PAD] * (width - len(row)) for row in lists], dtype=object)
        extra = {wire.EXCLUDE_ITEM_IDS: padded}
        if exclude_history:
            self._require_history(wire.RETRIEVE_EXCLUDING)
            extra[wire.EXCLUDE_HISTORY] = np.ones(len(users), bool)
        rows = _with_history(users, history, single)
        return self._fresh(lambda: self._recommend(wire.RETRIEVE_EXCLUDING, rows, k, extra, single))

    def rank(self, user: User, candidates: Sequence[Item], *, history: History = None) -> list[RankedItem]:
        """Scores each candidate (an item id, or a dict with ``item_id`` and features for a new item) for one user
        (with its recent ``history``, oldest first), in the given order."""
        if not candidates:
            return []
        return self._fresh(lambda: self._rank(user, candidates, history))

    def _rank(self, user: User, candidates: Sequence[Item], history: History) -> list[RankedItem]:
        signature = self.metadata().signatures.get(wire.RANK)
        if signature is None:
            raise ValueError(f"model '{self.model_name}' has no '{wire.RANK}' signature (no ranking task)")
        user_keys = set(self.metadata().signatures[wire.USER_EMBEDDING].inputs)
        users = _with_history([_as_dict(user, wire.USER_ID)], history, True)
        inputs = self._features(signature, users, user_keys, lead=1)
        items = [_as_dict(c, wire.ITEM_ID) for c in candidates]
        item_keys = set(signature.inputs) - user_keys
        flat = self._features(signature, items, item_keys, lead=2)
        inputs.update({key: value[np.newaxis] for key, value in flat.items()})
        outputs, _ = self._predict(wire.RANK, inputs)
        per_item = {key: value for key, value in outputs.items() if value.ndim == 2}
        return [RankedItem(str(items[n][wire.ITEM_ID]), {key: float(value[0, n]) for key, value in per_item.items()})
                for n in range(len(items))]

    def embed_users(self, users: Sequence[User], *, histories: Sequence[Sequence[str]] | None = None) -> np.ndarray:
        """User embeddings [B, D] (float32); ``histories``: each user's recent item ids, oldest first."""
        rows = _with_history([_as_dict(u, wire.USER_ID) for u in users], histories, False)
        return self._fresh(lambda: self._embed(wire.USER_EMBEDDING, rows))[wire.USER_EMBEDDING_OUTPUT]

    def embed_items(self, items: Sequence[Item]) -> np.ndarray:
        """Item embeddings [B, D] (float32); a dict with a new title runs the text encoder on the server, a dict with
        a vector feature (a numpy array of its dim) is read instead of the snapshot's vector."""
        rows = [_as_dict(i, wire.ITEM_ID) for i in items]
        return self._fresh(lambda: self._embed(wire.ITEM_EMBEDDING, rows))[wire.ITEM_EMBEDDING_OUTPUT]

    def _embed(self, name: str, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        signature = self.metadata().signatures[name]
        return self._predict(name, self._features(signature, rows, set(signature.inputs)))[0]

    # --- the raw Predict ---

    def predict(self, signature: str, inputs: Mapping[str, Any], *, output_filter: Sequence[str] = (),
                cast: bool = True) -> dict[str, np.ndarray]:
        """One Predict call. ``cast`` sends each input in the signature's dtype (else as the array's own dtype)."""
        return self._fresh(lambda: self._predict(signature, inputs, output_filter=output_filter, cast=cast)[0])

    def _fresh(self, call: Callable[[], Any]) -> Any:
        """``call()``; when the server refuses it as INVALID_ARGUMENT and the signatures it was built from have
        changed since (a hot swap), once more with the new signatures."""
        known = self._metadata
        try:
            return call()
        except InvalidArgumentError:
            if known is None or self.metadata(refresh=True).signatures == known.signatures:
                raise
            return call()

    def _predict(self, signature: str, inputs: Mapping[str, Any], *, output_filter: Sequence[str] = (),
                 cast: bool = True) -> tuple[dict[str, np.ndarray], int]:
        request = predict_pb2.PredictRequest(output_filter=list(output_filter))
        self._spec(request.model_spec)
        request.model_spec.signature_name = signature
        dtypes = {}
        if cast:
            info = self.metadata().signatures.get(signature or wire.DEFAULT)
            dtypes = {key: tf.as_dtype(t.dtype) for key, t in info.inputs.items()} if info else {}
        for key, value in inputs.items():
            array = np.asarray(value, dtype=object if _is_text(value) else None)
            dtype = dtypes.get(key)
            if dtype is not None and dtype != tf.string:
                array = array.astype(dtype.as_numpy_dtype)
            request.inputs[key].CopyFrom(to_proto(array, dtype if dtype is not None else _dtype_of(array)))
        response = self._call("Predict", self._predictions.Predict, request)
        served = response.model_spec.version.value
        if self._metadata is not None and served and served != self._metadata.version:
            self._stale = True  # the next call reads the new version's signatures
        return {key: to_array(proto) for key, proto in response.outputs.items()}, served

    # --- plumbing ---

    def _recommend(self, signature: str, users: Sequence[User], k: int, extra: dict[str, np.ndarray],
                   single: bool) -> Any:
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        info = self.metadata().signatures.get(signature)
        if info is None:
            raise ValueError(f"model '{self.model_name}' has no '{signature}' signature")
        rows = [_as_dict(u, wire.USER_ID) for u in users]
        if any(wire.HISTORY_ITEM_IDS in row for row in rows):
            self._require_history(signature)
        inputs = self._features(info, rows, set(info.inputs) - {wire.K, wire.EXCLUDE_ITEM_IDS, wire.EXCLUDE_HISTORY})
        inputs[wire.K] = np.full(len(rows), k, np.int32)
        if wire.EXCLUDE_HISTORY in info.inputs:
            inputs[wire.EXCLUDE_HISTORY] = np.zeros(len(rows), bool)
        inputs.update(extra)
        outputs, version = self._predict(signature, inputs)
        titles = outputs.get(wire.ITEM_TITLES)
        dropped = outputs.get(wire.HISTORY_DROPPED, np.zeros(len(rows), np.int32))
        results = []
        for n, row in enumerate(rows):
            items = tuple(Recommendation(_text(i), float(s), _text(titles[n, j]) if titles is not None else None)
                          for j, (i, s) in enumerate(zip(outputs[wire.ITEM_IDS][n], outputs[wire.SCORES][n],
                                                         strict=True))
                          if _text(i) != wire.PAD and j < k)
            results.append(Recommendations(str(row[wire.USER_ID]), items, version, int(dropped[n])))
        return results[0] if single else results

    def _require_history(self, signature: str) -> None:
        info = self.metadata().signatures.get(signature)
        if info is None or wire.HISTORY_ITEM_IDS not in info.inputs:
            raise ValueError(f"model '{self.model_name}' reads no request-time history (its '{signature}' "
                             f"signature has no '{wire.HISTORY_ITEM_IDS}' input): export it with this tfmtl, from "
                             "a model with model.history_length > 0")

    def _features(self, signature: SignatureInfo, rows: list[dict[str, Any]], keys: set[str],
                  lead: int = 1) -> dict[str, np.ndarray]:
        """Columns for ``keys`` from dict rows, in the signature's dtypes (see ``signatures.feature_columns``)."""
        specs = {key: (signature.inputs[key].dtype, signature.inputs[key].shape) for key in keys}
        return wire.feature_columns(specs, rows, lead=lead)

    def _spec(self, spec: Any) -> None:
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = self.version
        elif self.version_label is not None:
            spec.version_label = self.version_label

    def _call(self, method: str, rpc: Callable[..., Any], request: Any) -> Any:
        """One RPC within one deadline (``timeout``) shared by its attempts and their backoff."""
        retryable = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                     *([grpc.StatusCode.DEADLINE_EXCEEDED] if self.retry_deadline_exceeded else [])}
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            left = deadline - time.monotonic()
            try:
                return rpc(request, timeout=max(0.001, min(left, self.attempt_timeout or left)))
            except grpc.RpcError as error:
                delay = min(self.max_backoff, self.backoff * 2 ** attempt) * (0.5 + random.random() / 2)  # noqa: S311  (jitter: clients do not retry in step)
                if error.code() in retryable and attempt < self.retries and time.monotonic() + delay < deadline:
                    time.sleep(delay)
                    attempt += 1
                    continue
                failure = from_rpc_error(error, method)
                if error.code() in retryable | {grpc.StatusCode.DEADLINE_EXCEEDED}:
                    failure = type(failure)(failure.code, f"{failure.details} (server {self.address}; "
                                                          f"{attempt + 1} attempt(s) within a deadline of "
                                                          f"{self.timeout:g} s)", method=method)
                raise failure from None


def _infos(tensors: Any) -> dict[str, TensorInfo]:
    return {key: TensorInfo(tf.as_dtype(info.dtype).name,
                            tuple(None if d.size < 0 else d.size for d in info.tensor_shape.dim))
            for key, info in tensors.items()}


def _exclusion_lists(exclude: Any, users: int, single: bool) -> list[list[Any]]:
    """One list per user: a flat list of ids is every user's; a bare string is refused (it would be read as one
    id per character: "181" -> '1', '8', '1')."""
    if isinstance(exclude, (str, bytes)):
        raise ValueError(f"exclude: pass a list of item ids, not the bare string {exclude!r} (e.g. [{exclude!r}])")
    entries = list(exclude)
    nested = [not isinstance(e, (str, bytes, int, np.integer)) for e in entries]
    if not any(nested):
        return [entries] * users
    if single or not all(nested):
        raise ValueError("exclude: give one flat list of item ids, or one list per user (not a mix)")
    lists = [list(e) for e in entries]
    if len(lists) != users:
        raise ValueError(f"exclude: {len(lists)} lists for {users} users")
    return lists


def _with_history(users: Sequence[User], history: Any, single: bool) -> list[dict[str, Any]]:
    """User dicts with ``history_item_ids`` set: ``history`` is one list of item ids for a single user, or one
    list per user; a bare string is refused (it would be read as one item per character)."""
    rows = [_as_dict(u, wire.USER_ID) for u in users]
    if history is None:
        return rows
    if isinstance(history, (str, bytes)):
        raise ValueError(f"history: pass a list of item ids, oldest first, not the bare string {history!r} "
                         f"(e.g. [{history!r}])")
    if single:
        if any(not isinstance(h, (str, bytes, int, np.integer)) for h in history):
            raise ValueError("history: for one user, pass one flat list of item ids, oldest first")
        lists = [list(history)]
    else:
        if any(isinstance(h, (str, bytes, int, np.integer)) for h in history):
            raise ValueError("history: for a list of users, pass one list of item ids per user")
        lists = [list(h) for h in history]
    if len(lists) != len(rows):
        raise ValueError(f"history: {len(lists)} lists for {len(rows)} users")
    return [{**row, wire.HISTORY_ITEM_IDS: [str(i) for i in items]} for row, items in zip(rows, lists, strict=True)]


def _many(value: Any) -> tuple[list[Any], bool]:
    if isinstance(value, (str, Mapping)):
        return [value], True
    return list(value), False


def _as_dict(value: Any, id_key: str) -> dict[str, Any]:
    if isinstance(value, Mapping):
        if id_key not in value:
            raise ValueError(f"a feature dict needs '{id_key}' (got keys: {', '.join(map(str, value))})")
        return dict(value)
    return {id_key: str(value)}


def _is_text(value: Any) -> bool:
    array = np.asarray(value) if not isinstance(value, np.ndarray) else value
    return array.dtype == object or array.dtype.kind in "US"


def _dtype_of(array: np.ndarray) -> tf.DType:
    return tf.string if array.dtype == object or array.dtype.kind in "US" else tf.as_dtype(array.dtype)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


__all__ = ["Client", "ModelMetadata", "RankedItem", "Recommendation", "Recommendations", "ServingError",
           "VersionStatus"]
