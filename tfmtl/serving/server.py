"""A local TF-Serving-compatible gRPC server for development, demos and tests (production runs stock TF Serving).

It implements ``PredictionService.Predict`` and ``GetModelMetadata`` and ``ModelService.GetModelStatus`` with TF
Serving's semantics and status codes (see the shared notes/tf-serving.md): the newest numeric version is served
and polled for (:mod:`tfmtl.serving.versions`), versions load through the TF1 session loader with the TF Text ops
registered and replay their warmup requests, dtypes are strict, outputs come back in typed fields. It binds
127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import ipaddress
import signal
import sys
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfmtl.serving.tensors import to_proto
from tfmtl.serving.versions import RpcStatus, VersionManager

DEFAULT_MAX_MESSAGE_BYTES = 16 << 20  # a development server: 8 workers x 256 MiB would be 2 GiB in flight
DEFAULT_MAX_CONCURRENT_RPCS = 64  # in flight at once (8 computing, the rest queued); more get RESOURCE_EXHAUSTED
DEFAULT_MAX_REQUEST_SECONDS = 30.0  # the longest one Predict may compute, whatever deadline the client set
SIGNATURE_DEF = "signature_def"


class _Model:
    """Request -> servable resolution shared by the three RPCs."""

    def __init__(self, manager: VersionManager) -> None:
        self.manager = manager

    def check_spec(self, spec: Any) -> int | None:
        """The version a ModelSpec asks for (None = newest); RpcStatus for a bad name or label."""
        if not spec.name:
            raise RpcStatus(grpc.StatusCode.INVALID_ARGUMENT, "Missing model name in ModelSpec")
        version = spec.version.value if spec.HasField("version") else None
        if spec.name != self.manager.name:
            request = f"Specific({spec.name}, {version})" if version is not None else f"Latest({spec.name})"
            raise RpcStatus(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request}")
        if spec.WhichOneof("version_choice") == "version_label":
            raise RpcStatus(grpc.StatusCode.INVALID_ARGUMENT,
                            f"Unrecognized servable version label: {spec.version_label}")
        return version


def _abort(context: grpc.ServicerContext, status: RpcStatus) -> None:
    context.abort(status.code, status.message)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, model: _Model, *, max_seconds: float = DEFAULT_MAX_REQUEST_SECONDS) -> None:
        self.model = model
        self.max_seconds = max_seconds

    def Predict(self, request: predict_pb2.PredictRequest,
                context: grpc.ServicerContext) -> predict_pb2.PredictResponse:
        try:
            version = self.model.check_spec(request.model_spec)
            with self.model.manager.servable(version) as servable:
                inputs = servable.decode(request.model_spec.signature_name, request.inputs)
                signature, outputs = servable.run(request.model_spec.signature_name, inputs,
                                                  tuple(request.output_filter), timeout=self._time_left(context))
                response = predict_pb2.PredictResponse()
                response.model_spec.name = servable.name
                response.model_spec.version.value = servable.version
                response.model_spec.signature_name = signature
                for key, value in outputs.items():
                    response.outputs[key].CopyFrom(to_proto(value))
                return response
        except RpcStatus as status:
            _abort(context, status)
        except (ValueError, TypeError) as error:  # an input TensorProto that does not decode
            _abort(context, RpcStatus(grpc.StatusCode.INVALID_ARGUMENT, str(error)))
        raise AssertionError("unreachable")

    def _time_left(self, context: grpc.ServicerContext) -> float:
        """Seconds the model may compute for this request: the RPC's remaining deadline, at most the server's own
        bound. A client that has gone away, or whose deadline has passed, gets no computation."""
        if not context.is_active():
            raise RpcStatus(grpc.StatusCode.CANCELLED, "the client cancelled the request")
        left = context.time_remaining()
        left = self.max_seconds if left is None else min(left, self.max_seconds)
        if left <= 0:
            raise RpcStatus(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded before the model ran")
        return left

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                         context: grpc.ServicerContext) -> get_model_metadata_pb2.GetModelMetadataResponse:
        try:
            fields = list(request.metadata_field)
            if not fields:
                raise RpcStatus(grpc.StatusCode.INVALID_ARGUMENT,
                                "GetModelMetadataRequest must specify at least one metadata_field")
            for field in fields:
                if field != SIGNATURE_DEF:
                    raise RpcStatus(grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {field} is not supported")
            version = self.model.check_spec(request.model_spec)
            with self.model.manager.servable(version) as servable:
                response = get_model_metadata_pb2.GetModelMetadataResponse()
                response.model_spec.name = servable.name
                response.model_spec.version.value = servable.version
                signatures = get_model_metadata_pb2.SignatureDefMap()
                for name, definition in servable.signature_defs.items():
                    signatures.signature_def[name].CopyFrom(definition)
                response.metadata[SIGNATURE_DEF].Pack(signatures)
                return response
        except RpcStatus as status:
            _abort(context, status)
        raise AssertionError("unreachable")


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, model: _Model) -> None:
        self.model = model

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                       context: grpc.ServicerContext) -> get_model_status_pb2.GetModelStatusResponse:
        try:
            spec = request.model_spec
            if not spec.name:
                raise RpcStatus(grpc.StatusCode.INVALID_ARGUMENT, "Missing model name in ModelSpec")
            statuses = self.model.manager.statuses() if spec.name == self.model.manager.name else []
            if not statuses:
                raise RpcStatus(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {spec.name}")
            if spec.HasField("version"):
                statuses = [s for s in statuses if s.version == spec.version.value]
                if not statuses:
                    raise RpcStatus(grpc.StatusCode.NOT_FOUND,
                                    f"Could not find version {spec.version.value} of model {spec.name}")
            response = get_model_status_pb2.GetModelStatusResponse()
            for status in statuses:
                entry = response.model_version_status.add(version=status.version, state=status.state)
                entry.status.error_code = status.error_code
                entry.status.error_message = status.error_message
            return response
        except RpcStatus as status:
            _abort(context, status)
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the server's certificate chain and private key, and optionally a CA whose client certificates
    are required (mutual TLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        ca = Path(self.client_ca).read_bytes() if self.client_ca else None
        return grpc.ssl_server_credentials([(Path(self.key).read_bytes(), Path(self.cert).read_bytes())],
                                           root_certificates=ca, require_client_auth=ca is not None)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class LocalServer:
    """``with LocalServer(base, name, port=0) as server: Client(server.address, name)``; port 0 picks a free one.

    It listens on loopback unless told otherwise; any other address needs ``tls`` (the server has no other
    authentication) or an explicit ``insecure=True``.
    """

    def __init__(self, model_base: str | Path, name: str, *, host: str = "127.0.0.1", port: int = 8500,
                 poll_seconds: float = 1.0, max_workers: int = 8,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, log: bool = True, tls: TlsFiles | None = None,
                 insecure: bool = False, max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS,
                 max_request_seconds: float = DEFAULT_MAX_REQUEST_SECONDS) -> None:
        from tfmtl.serving.signatures import check_model_name

        if not is_loopback(host) and tls is None and not insecure:
            raise ValueError(f"refusing to listen on {host}, beyond this machine, without TLS: give a certificate "
                             "and key (--tls-cert/--tls-key, and --tls-client-ca to require client certificates), "
                             "or pass --insecure to accept unauthenticated plaintext from the network")
        self.name = check_model_name(name)
        self.host = host
        self.manager = VersionManager(model_base, name, poll_seconds=poll_seconds, log=log)
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes), ("grpc.so_reuseport", 0)]
        # Past max_concurrent_rpcs, gRPC answers RESOURCE_EXHAUSTED at once instead of queueing without bound.
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="tfmtl-rpc"),
                                  options=options, maximum_concurrent_rpcs=max_concurrent_rpcs)
        model = _Model(self.manager)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(model, max_seconds=max_request_seconds), self.server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(model), self.server)
        self.port = (self.server.add_secure_port(f"{host}:{port}", tls.credentials()) if tls is not None
                     else self.server.add_insecure_port(f"{host}:{port}"))
        if self.port == 0:
            raise RuntimeError(f"cannot bind {host}:{port} (in use?)")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> LocalServer:
        """Loads the newest version (if any), then answers requests and polls for new versions."""
        self.manager.start()
        self.server.start()
        return self

    def stop(self, grace: float = 2.0) -> None:
        self.server.stop(grace).wait()
        self.manager.stop()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(model_base: str | Path, name: str, *, host: str = "127.0.0.1", port: int = 8500,
          max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, tls: TlsFiles | None = None,
          insecure: bool = False) -> None:
    """Runs until SIGINT/SIGTERM (the ``tfmtl serve`` command)."""
    server = LocalServer(model_base, name, host=host, port=port, max_message_bytes=max_message_bytes, tls=tls,
                         insecure=insecure).start()
    if not is_loopback(host) and tls is None:
        print(f"[tfmtl serve] WARNING: --insecure: listening on {host}, beyond this machine, in plaintext and "
              "without authentication. Production serving is stock TF Serving.", file=sys.stderr)
    print(f"[tfmtl serve] {name} on {server.address} (gRPC; TF Serving's PredictionService and ModelService)",
          file=sys.stderr, flush=True)
    stopped = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stopped.set())
    stopped.wait()
    print("[tfmtl serve] shutting down", file=sys.stderr, flush=True)
    server.stop()
