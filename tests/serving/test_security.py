"""The local server's safe defaults: loopback only, no path tricks in model names."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfmtl.serving.server import LocalServer


def listening_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on ``port``, from /proc/net/tcp and tcp6 (hex, as the kernel writes them)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                found.add(address)
    return found


def test_the_server_binds_loopback_by_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = LocalServer(tmp_path, "toy", port=0, log=False)
    server.start()
    try:
        assert server.address.startswith("127.0.0.1:")
        found = listening_addresses(server.port)
        loopback = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}
        assert found and found <= loopback, found  # 127.0.0.1 (maybe as ::ffff:127.0.0.1) or ::1, nothing else
    finally:
        server.stop()


@pytest.mark.parametrize("name", ["../toy", "toy/../../etc", "/abs", "..", "a\\b"])
def test_model_names_with_path_tricks_are_refused(tmp_path, name: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="model name"):
        LocalServer(tmp_path, name, port=0, log=False)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for localhost / 127.0.0.1 and its key (PEM)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                               x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .sign(key, hashes.SHA256()))
    cert, private = folder / "server.pem", folder / "server.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, private


def test_a_non_loopback_bind_needs_tls_or_an_explicit_insecure(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="refusing to listen on 0.0.0.0, beyond this machine, without TLS"):
        LocalServer(tmp_path, "toy", host="0.0.0.0", port=0, log=False)
    server = LocalServer(tmp_path, "toy", host="0.0.0.0", port=0, log=False, insecure=True)
    server.server.stop(0)


def test_the_server_speaks_tls_when_given_a_certificate(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import grpc

    from tfmtl.serving.client import Client
    from tfmtl.serving.errors import NotFoundError, UnavailableError
    from tfmtl.serving.server import TlsFiles

    cert, key = self_signed(tmp_path)
    with LocalServer(tmp_path / "models", "toy", port=0, log=False, tls=TlsFiles(cert, key)) as server:
        trusted = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with Client(f"localhost:{server.port}", "toy", timeout=10, retries=0, credentials=trusted) as client:
            with pytest.raises(NotFoundError):  # the handshake worked; there is simply no model yet
                client.status()
        with Client(f"localhost:{server.port}", "toy", timeout=3, retries=0) as plaintext:
            with pytest.raises(UnavailableError):
                plaintext.status()


# --- bounded work: the client's deadline bounds the computation, gone clients get none, concurrency is capped ---

class FakeServable:
    """Stands in for a loaded version: records each run's timeout; ``delay`` seconds per run."""

    name, version = "toy", 1

    def __init__(self, delay: float = 0.0) -> None:
        self.delay, self.timeouts = delay, []  # type: ignore[var-annotated]

    def decode(self, signature, inputs):  # type: ignore[no-untyped-def]
        return {}

    def run(self, signature, inputs, output_filter=(), timeout=None):  # type: ignore[no-untyped-def]
        import time

        self.timeouts.append(timeout)
        time.sleep(self.delay)
        return "retrieve", {}


def with_fake(server: LocalServer, servable: FakeServable) -> None:
    import contextlib

    @contextlib.contextmanager
    def fake(version=None):  # type: ignore[no-untyped-def]
        yield servable

    server.manager.servable = fake  # type: ignore[method-assign]


class Context:
    def __init__(self, active: bool, remaining: float | None) -> None:
        self.active, self.remaining = active, remaining

    def is_active(self) -> bool:
        return self.active

    def time_remaining(self) -> float | None:
        return self.remaining

    def abort(self, code, details):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"{code.name}: {details}")


def test_the_model_computes_only_within_the_clients_deadline_and_not_for_gone_clients(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tensorflow_serving.apis import predict_pb2

    from tfmtl.serving.server import PredictionServicer, _Model

    server = LocalServer(tmp_path, "toy", port=0, log=False, max_request_seconds=30)
    servable = FakeServable()
    with_fake(server, servable)
    servicer = PredictionServicer(_Model(server.manager), max_seconds=30)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "toy"
    with pytest.raises(RuntimeError, match="CANCELLED"):
        servicer.Predict(request, Context(active=False, remaining=5.0))
    with pytest.raises(RuntimeError, match="DEADLINE_EXCEEDED"):
        servicer.Predict(request, Context(active=True, remaining=0.0))
    assert servable.timeouts == []  # neither ran the model
    servicer.Predict(request, Context(active=True, remaining=0.25))
    servicer.Predict(request, Context(active=True, remaining=None))  # no client deadline: the server's bound
    assert servable.timeouts == [0.25, 30]
    server.server.stop(0)


def test_requests_beyond_the_concurrency_bound_are_refused_at_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import threading

    import grpc
    import numpy as np

    from tfmtl.serving.client import Client
    from tfmtl.serving.errors import ServingError

    with LocalServer(tmp_path, "toy", port=0, log=False, max_concurrent_rpcs=2) as server:
        with_fake(server, FakeServable(delay=1.0))
        codes: list[object] = []

        def call() -> None:
            with Client(server.address, "toy", timeout=10, retries=0) as client:
                try:
                    client.predict("retrieve", {"k": np.array([1], np.int32)}, cast=False)
                    codes.append("OK")
                except ServingError as error:
                    codes.append(error.code)

        threads = [threading.Thread(target=call) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert codes.count("OK") >= 1 and grpc.StatusCode.RESOURCE_EXHAUSTED in codes, codes
    assert set(codes) <= {"OK", grpc.StatusCode.RESOURCE_EXHAUSTED}
