"""Model versions the way TF Serving manages them: load with the TF1 session loader, warm up, swap, unload.

The newest numeric version folder under ``<base>/<name>`` is served (TF Serving's default ``latest`` policy); the
folder is polled every second. A new version is loaded and warmed up next to the old one and becomes visible by
one reference swap; the old one is unloaded once its requests in flight have finished. A version that fails to
load or warm up is reported (state END with the error) and the old one keeps serving.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
CLOSE_TIMEOUT_SECONDS = 30.0  # how long an unloaded version waits for its requests in flight
MAX_LOAD_RETRIES = 5  # as TF Serving's --max_num_load_retries
LOAD_RETRY_SECONDS = 60.0  # as TF Serving's --load_retry_interval_micros
DEFAULT_SIGNATURE = "serving_default"
START, LOADING, AVAILABLE, UNLOADING, END = 10, 20, 30, 40, 50  # ModelVersionStatus.State


class RpcStatus(Exception):
    """An RPC's error status: raised inside the server, turned into the gRPC status by the servicer."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _type_name(dtype: Any) -> str:
    """TensorFlow's own spelling (DataTypeString): float, double, int32, string."""
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(dtype.as_datatype_enum)[3:].lower()


def status_of_tf_error(error: Exception) -> RpcStatus:
    """TensorFlow's error codes are gRPC's (InvalidArgumentError -> INVALID_ARGUMENT, ...)."""
    code = _CODES.get(getattr(error, "error_code", 13), grpc.StatusCode.INTERNAL)
    if code == grpc.StatusCode.UNKNOWN:  # TF Serving's clients expect a definite code
        code = grpc.StatusCode.INTERNAL
    return RpcStatus(code, getattr(error, "message", str(error)))


class Servable:
    """One version, loaded into its own graph and TF1 session; counts its requests in flight."""

    def __init__(self, name: str, version: int, path: Path) -> None:
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (stock TF Serving links the TF Text ops)

        self.name, self.version, self.path = name, version, Path(path)
        self.session = tf.compat.v1.Session(graph=tf.Graph())
        try:
            meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], str(path))
        except Exception:
            self.session.close()
            raise
        self.signature_defs = {k: v for k, v in meta.signature_def.items() if not k.startswith("__")}
        self._condition = threading.Condition()
        self._in_flight = 0
        self._closing = False

    # --- requests ---

    def signature_for(self, signature: str, keys: Iterable[str]) -> tuple[str, Any]:
        """(resolved name, SignatureDef) when ``keys`` are exactly its inputs; raises RpcStatus as TF Serving does."""
        name = signature or DEFAULT_SIGNATURE
        definition = self.signature_defs.get(name)
        if definition is None:
            raise RpcStatus(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.')
        expected, sent = set(definition.inputs), set(keys)
        if expected != sent:
            raise RpcStatus(grpc.StatusCode.INVALID_ARGUMENT,
                            f"input size does not match signature: {len(sent)}!={len(expected)} "
                            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
                            f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                            f"Missing but required: {{{','.join(sorted(expected - sent))}}}.")
        return name, definition

    def decode(self, signature: str, protos: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """A request's input TensorProtos as arrays: the keys are checked against the signature first (nothing
        is decoded for a request the signature refuses), then each tensor within what is left of the request's
        element budget. Raises RpcStatus INVALID_ARGUMENT naming the input."""
        from tfmtl.serving.tensors import MAX_REQUEST_ELEMENTS, to_array

        self.signature_for(signature, protos)
        budget, arrays = MAX_REQUEST_ELEMENTS, {}
        for key, proto in protos.items():
            try:
                arrays[key] = to_array(proto, key=key, max_elements=budget)
            except (ValueError, TypeError) as error:  # TypeError: a dtype TF cannot build
                raise RpcStatus(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
            budget -= arrays[key].size
        return arrays

    def run(self, signature: str, inputs: Mapping[str, Any], output_filter: tuple[str, ...] = (),
            timeout: float | None = None) -> tuple[str, dict[str, np.ndarray]]:
        """Runs one Predict: (resolved signature name, output key -> array); raises RpcStatus as TF Serving does.

        ``timeout``: seconds the session may run (the RPC's remaining deadline); past it, DEADLINE_EXCEEDED.
        """
        import tensorflow as tf

        name, definition = self.signature_for(signature, inputs)
        for alias in output_filter:
            if alias not in definition.outputs:
                raise RpcStatus(grpc.StatusCode.INVALID_ARGUMENT,
                                f"output tensor alias not found in signature: {alias} Outputs expected to be in the "
                                f"set {{{','.join(sorted(definition.outputs))}}}.")
        feed = {}
        for position, key in enumerate(sorted(definition.inputs)):
            info, value = definition.inputs[key], inputs[key]
            want, got = tf.as_dtype(info.dtype), tf.as_dtype(value.dtype if value.dtype != object else tf.string)
            if want != got:
                raise RpcStatus(grpc.StatusCode.INVALID_ARGUMENT,
                                f"Expects arg[{position}] to be {_type_name(want)} but {_type_name(got)} is provided "
                                f"(input '{key}')")
            feed[info.name] = value
        fetch = {key: info.name for key, info in definition.outputs.items()
                 if not output_filter or key in output_filter}
        options = (tf.compat.v1.RunOptions(timeout_in_ms=max(1, int(timeout * 1000))) if timeout is not None
                   else None)
        try:
            return name, self.session.run(fetch, feed, options=options)
        except tf.errors.OpError as error:
            raise status_of_tf_error(error) from None
        except (ValueError, TypeError) as error:  # e.g. a feed whose shape the placeholder refuses
            raise RpcStatus(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None

    def warmup(self) -> int:
        """Replays ``assets.extra/tf_serving_warmup_requests`` (PredictLog records); any failure fails the load."""
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2

        path = self.path / WARMUP_FILE
        if not path.exists():
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            log = prediction_log_pb2.PredictionLog.FromString(record)
            if not log.HasField("predict_log"):
                raise ValueError(f"warmup record {count} is not a PredictLog (only Predict is replayed)")
            request = log.predict_log.request
            self.run(request.model_spec.signature_name,
                     {k: tf.make_ndarray(v) for k, v in request.inputs.items()}, tuple(request.output_filter))
            count += 1
            if count > 1000:
                raise ValueError("more than 1000 warmup records (TF Serving's limit)")
        return count

    # --- lifetime ---

    def acquire(self) -> bool:
        with self._condition:
            if self._closing:
                return False
            self._in_flight += 1
            return True

    def release(self) -> None:
        with self._condition:
            self._in_flight -= 1
            self._condition.notify_all()

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> bool:
        """Refuses new requests, waits up to ``timeout`` seconds for those in flight, then frees the session (a
        request stuck past the bound must not block every later load). Returns whether all had finished."""
        deadline = time.monotonic() + timeout
        with self._condition:
            self._closing = True
            while self._in_flight and time.monotonic() < deadline:
                self._condition.wait(timeout=max(0.0, deadline - time.monotonic()))
            drained = not self._in_flight
        self.session.close()
        return drained


@dataclass
class VersionStatus:
    version: int
    state: int
    error_code: int = 0
    error_message: str = ""


class VersionManager:
    """Serves the newest version of ``<base>/<name>``; polls for new ones every ``poll_seconds``."""

    def __init__(self, base: str | Path, name: str, *, poll_seconds: float = 1.0, log: bool = True,
                 max_load_retries: int = MAX_LOAD_RETRIES, load_retry_seconds: float = LOAD_RETRY_SECONDS) -> None:
        self.base, self.name, self.poll_seconds, self.log = Path(base), name, poll_seconds, log
        self.max_load_retries, self.load_retry_seconds = max_load_retries, load_retry_seconds
        self._current: Servable | None = None
        self._lock = threading.Lock()
        self._statuses: dict[int, VersionStatus] = {}
        # version -> (folder mtime, failed loads, when to retry): retried as TF Serving retries, and again whenever
        # the folder changes.
        self._failed: dict[int, tuple[float, int, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def model_dir(self) -> Path:
        return self.base / self.name

    def start(self) -> VersionManager:
        self.poll()
        self._thread = threading.Thread(target=self._poll_loop, name=f"tfmtl-versions-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)  # a load still running closes its own session when it ends
        with self._lock:
            current, self._current = self._current, None
        if current is not None:
            current.close()

    # --- requests ---

    @contextmanager
    def servable(self, version: int | None = None) -> Iterator[Servable]:
        """The servable for a request (the newest, or ``version``); raises RpcStatus NOT_FOUND."""
        while True:
            with self._lock:
                current = self._current
            if current is None or (version is not None and current.version != version):
                request = f"Specific({self.name}, {version})" if version is not None else f"Latest({self.name})"
                raise RpcStatus(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request}")
            if current.acquire():
                break  # else it is being unloaded after a swap: read the new one
        try:
            yield current
        finally:
            current.release()

    def statuses(self) -> list[VersionStatus]:
        with self._lock:
            return sorted(self._statuses.values(), key=lambda s: -s.version)

    # --- polling ---

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception as error:  # a poll must never kill the server
                self._say(f"version poll failed: {error}")

    def poll(self) -> None:
        """One scan: load the newest version if it is not the one served (and has not failed as it is)."""
        available = _numeric_versions(self.model_dir)
        current = self._current
        if not available:
            return
        target, path = available[-1]
        if current is not None and current.version == target:
            return
        stamp = _mtime(path)
        failed_stamp, failures, retry_at = self._failed.get(target, (None, 0, 0.0))
        if failed_stamp == stamp and (failures > self.max_load_retries or time.monotonic() < retry_at):
            return
        failures = failures if failed_stamp == stamp else 0
        self._set_status(VersionStatus(target, LOADING))
        started = time.perf_counter()
        try:
            servable = Servable(self.name, target, path)
            try:
                replayed = servable.warmup()
            except Exception:
                servable.close()
                raise
        except Exception as error:
            self._failed[target] = (stamp, failures + 1, time.monotonic() + self.load_retry_seconds)
            message = self._without_paths(f"{type(error).__name__}: {error}".strip())[:2000]
            code = getattr(error, "code", None)
            self._set_status(VersionStatus(target, END, code.value[0] if isinstance(code, grpc.StatusCode) else 2,
                                           message))
            self._say(f"version {target} failed to load; still serving "
                      f"{current.version if current else 'nothing'}: {message.splitlines()[0]}")
            return
        with self._lock:
            if self._stop.is_set():  # stopped while this loaded: nobody will close it later
                old, stopped = None, True
            else:
                old, stopped, self._current = self._current, False, servable
                self._statuses[target] = VersionStatus(target, AVAILABLE)
                if old is not None:
                    self._statuses[old.version] = VersionStatus(old.version, UNLOADING)
        if stopped:
            servable.close()
            return
        self._failed.pop(target, None)
        self._say(f"serving {self.name} version {target} ({replayed} warmup requests, "
                  f"{time.perf_counter() - started:.1f} s)")
        if old is not None:
            old.close()
            self._set_status(VersionStatus(old.version, END))

    def _without_paths(self, message: str) -> str:
        """Status messages go to clients: the server's folders are not theirs to see."""
        for folder, shown in ((self.model_dir.resolve(), self.name), (self.model_dir, self.name),
                              (self.base.resolve(), "<model base>"), (self.base, "<model base>")):
            if str(folder) not in (".", ""):
                message = message.replace(str(folder), shown)
        return message

    def _set_status(self, status: VersionStatus) -> None:
        with self._lock:
            self._statuses[status.version] = status

    def _say(self, message: str) -> None:
        if self.log:
            print(f"[tfmtl serve] {message}", file=sys.stderr, flush=True)


def _numeric_versions(model_dir: Path) -> list[tuple[int, Path]]:
    if not model_dir.is_dir():
        return []
    found = [(int(p.name), p) for p in model_dir.iterdir() if p.name.isdigit() and p.is_dir()]
    return sorted(found)


def _mtime(path: Path) -> float:
    try:
        return max(path.stat().st_mtime, (path / "saved_model.pb").stat().st_mtime)
    except OSError:
        return 0.0
