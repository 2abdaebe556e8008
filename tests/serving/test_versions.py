"""Version lifecycle on the local server, and the client's retries and deadlines. Every loop is bounded in time."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tfmtl.serving.client import Client
from tfmtl.serving.errors import DeadlineExceededError, UnavailableError
from tfmtl.serving.server import LocalServer
from tfmtl.serving.versions import Servable, VersionManager


def publish_copy(source: Path, model_dir: Path, version: int, corrupt: str | None = None) -> Path:
    """Copies a version folder next to the others, optionally damaged, and renames it into place."""
    staging = model_dir / f".staging-{version}"
    shutil.copytree(source, staging)
    if corrupt == "graph":
        (staging / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    elif corrupt == "warmup":
        (staging / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"\x00not a TFRecord")
    os.rename(staging, model_dir / str(version))
    return model_dir / str(version)


def wait_for(condition, seconds: float = 90.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def model_dir(exported, tmp_path) -> Path:  # type: ignore[no-untyped-def]
    folder = tmp_path / "toy"
    folder.mkdir()
    publish_copy(exported.path, folder, 1)
    return folder


def test_hot_swap_under_nonstop_requests_fails_none(model_dir: Path) -> None:
    with LocalServer(model_dir.parent, "toy", port=0, poll_seconds=0.2, log=False) as server:
        stop, seen, failures, count = threading.Event(), set(), [], [0]

        def hammer() -> None:
            with Client(server.address, "toy", timeout=30, retries=0) as client:
                while not stop.is_set():
                    try:
                        seen.add(client.recommend("u0", k=3).version)
                        count[0] += 1
                        time.sleep(0.005)  # nonstop, but leaving the two cores to the version being loaded
                    except Exception as error:  # any failure is the test's failure
                        failures.append(error)

        workers = [threading.Thread(target=hammer) for _ in range(2)]
        for worker in workers:
            worker.start()
        try:
            assert wait_for(lambda: count[0] > 20)
            publish_copy(model_dir / "1", model_dir, 2)
            assert wait_for(lambda: 2 in seen), "version 2 was never served"
            settled = count[0]
            assert wait_for(lambda: count[0] > settled + 20)
        finally:
            stop.set()
            for worker in workers:
                worker.join(timeout=60)
        assert failures == [] and seen == {1, 2}
        with Client(server.address, "toy", timeout=30) as client:
            # Unloading ends once the old version's last request is done (asynchronously, as in TF Serving).
            assert wait_for(lambda: {s.version: s.state for s in client.status()} == {2: "AVAILABLE", 1: "END"}), \
                {s.version: s.state for s in client.status()}


@pytest.mark.parametrize("damage", ["graph", "warmup"])
def test_a_version_that_fails_to_load_leaves_the_old_one_serving(model_dir: Path, damage: str) -> None:
    with LocalServer(model_dir.parent, "toy", port=0, poll_seconds=0.2, log=False) as server:
        with Client(server.address, "toy", timeout=30) as client:
            publish_copy(model_dir / "1", model_dir, 2, corrupt=damage)
            assert wait_for(lambda: any(s.version == 2 and s.state == "END" for s in client.status()))
            failed = next(s for s in client.status() if s.version == 2)
            assert failed.error_code != 0 and failed.error_message
            assert client.recommend("u0", k=3).version == 1
            assert {s.version: s.state for s in client.status()}[1] == "AVAILABLE"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_client_retries_until_a_late_server_comes_up(model_dir: Path) -> None:
    port = free_port()
    servers: list[LocalServer] = []
    starter = threading.Timer(1.5, lambda: servers.append(
        LocalServer(model_dir.parent, "toy", port=port, log=False).start()))
    starter.start()
    try:
        # About a minute of retries: the server loads and warms the model before it listens, slower on busy cores.
        with Client(f"127.0.0.1:{port}", "toy", timeout=90, retries=60, backoff=0.2, max_backoff=2.0) as client:
            assert len(client.recommend("u0", k=2)) == 2
    finally:
        starter.join()
        for server in servers:
            server.stop()


def test_no_server_at_all_is_a_clear_unavailable_error() -> None:
    with Client(f"127.0.0.1:{free_port()}", "toy", timeout=1, retries=2, backoff=0.05) as client:
        with pytest.raises(UnavailableError, match="3 attempt"):
            client.status()


class DroppingPredictions(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Drops the first two calls as a server shutting down drops calls it has not started, then fails clearly."""

    def __init__(self) -> None:
        self.calls = 0

    def GetModelMetadata(self, request, context):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls <= 2:
            context.abort(grpc.StatusCode.CANCELLED, "dropped")
        context.abort(grpc.StatusCode.INTERNAL, f"call {self.calls} reached the model")


def test_a_call_the_server_drops_is_retried_as_unavailable_is() -> None:
    from tfmtl.serving.errors import ServingError

    servicer = DroppingPredictions()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with Client(f"127.0.0.1:{port}", "toy", timeout=10, retries=3, backoff=0.01) as client:
            with pytest.raises(ServingError, match="INTERNAL: call 3 reached the model"):
                client.metadata()
        servicer.calls = 0
        with Client(f"127.0.0.1:{port}", "toy", timeout=10, retries=1, backoff=0.01) as client:
            with pytest.raises(ServingError, match="CANCELLED: dropped.*2 attempt"):
                client.metadata()
    finally:
        server.stop(0)


class SlowPredictions(prediction_service_pb2_grpc.PredictionServiceServicer):
    def GetModelMetadata(self, request, context):  # type: ignore[no-untyped-def]
        time.sleep(2.0)
        context.abort(grpc.StatusCode.INTERNAL, "too late anyway")


def test_a_deadline_that_runs_out_is_a_clear_timeout() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(SlowPredictions(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        # By default a deadline that ran out is not retried: the server may still be computing the first attempt.
        with Client(f"127.0.0.1:{port}", "toy", timeout=0.2, retries=3, backoff=0.01) as client:
            started = time.monotonic()
            with pytest.raises(DeadlineExceededError, match=r"DEADLINE_EXCEEDED.*1 attempt.*deadline of 0.2 s") \
                    as caught:
                client.metadata()
            assert time.monotonic() - started < 1.0
            assert isinstance(caught.value, TimeoutError)
        # Asked to, it retries, but every attempt shares the call's one deadline.
        with Client(f"127.0.0.1:{port}", "toy", timeout=0.7, attempt_timeout=0.2, retries=10, backoff=0.01,
                    retry_deadline_exceeded=True) as client:
            started = time.monotonic()
            with pytest.raises(DeadlineExceededError, match=r"[2-4] attempt.*deadline of 0.7 s"):
                client.metadata()
            assert time.monotonic() - started < 1.5
    finally:
        server.stop(0)


def test_calls_inside_their_deadline_survive_a_server_restart(model_dir: Path) -> None:
    port = free_port()
    first = LocalServer(model_dir.parent, "toy", port=port, log=False).start()
    answered: list[int] = []
    failed: list[Exception] = []

    def stream() -> None:
        with Client(f"127.0.0.1:{port}", "toy", timeout=60, retries=60, backoff=0.1, max_backoff=1.0) as client:
            for _ in range(80):
                try:
                    answered.append(len(client.recommend("u0", k=2)))
                except Exception as error:  # a dropped request is the test's failure
                    failed.append(error)
                time.sleep(0.02)

    worker = threading.Thread(target=stream)
    worker.start()
    second = None
    try:
        assert wait_for(lambda: len(answered) >= 10)
        # Requests in flight finish (a generous grace: a loaded CI machine can take over a second per call, and one
        # CI run saw a call outlive 10 s, cancelled at the grace's end; stop returns as soon as they are done); new
        # ones find no server (UNAVAILABLE, retried) until the restart.
        first.stop(grace=60.0)
        time.sleep(1.0)
        second = LocalServer(model_dir.parent, "toy", port=port, log=False).start()
        worker.join(timeout=180)
    finally:
        if second is not None:
            second.stop()
    assert failed == [] and answered == [2] * 80


# --- the version manager's own guarantees (no gRPC) ---

def test_a_failed_load_is_retried_as_tf_serving_retries_and_its_status_names_no_server_path(model_dir: Path) -> None:
    manager = VersionManager(model_dir.parent, "toy", poll_seconds=3600, log=False, load_retry_seconds=0.5)
    manager.start()
    try:
        publish_copy(model_dir / "1", model_dir, 2, corrupt="graph")
        manager.poll()
        failed = {s.version: s for s in manager.statuses()}[2]
        assert failed.state == 50 and "saved_model.pb" in failed.error_message  # END, saying what is wrong
        assert str(model_dir.parent) not in failed.error_message and str(model_dir.resolve()) not in \
            failed.error_message
        # The file is repaired in place, times kept: nothing the poll looks at changes, as when a storage mount
        # that was briefly unreadable comes back.
        graph = model_dir / "2" / "saved_model.pb"
        times = graph.stat()
        shutil.copy(model_dir / "1" / "saved_model.pb", graph)
        os.utime(graph, ns=(times.st_atime_ns, times.st_mtime_ns))
        manager.poll()  # inside the retry interval: not yet
        assert {s.version: s.state for s in manager.statuses()}[2] == 50
        time.sleep(0.6)
        manager.poll()
        assert {s.version: s.state for s in manager.statuses()}[2] == 30  # AVAILABLE
        with manager.servable() as servable:
            assert servable.version == 2
    finally:
        manager.stop()


def test_closing_a_version_waits_for_requests_in_flight_only_so_long(model_dir: Path) -> None:
    servable = Servable("toy", 1, model_dir / "1")
    assert servable.acquire()  # a request that never finishes
    started = time.monotonic()
    assert servable.close(timeout=0.3) is False
    assert time.monotonic() - started < 2.0 and not servable.acquire()


def test_a_load_that_ends_after_stop_closes_its_own_session(model_dir: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import tfmtl.serving.versions as versions

    loading, finish, closed = threading.Event(), threading.Event(), []

    class SlowServable:
        def __init__(self, name: str, version: int, path: Path) -> None:
            self.version = version
            loading.set()
            finish.wait(30)

        def warmup(self) -> int:
            return 0

        def close(self, timeout: float = 30.0) -> bool:
            closed.append(self.version)
            return True

    monkeypatch.setattr(versions, "Servable", SlowServable)
    manager = VersionManager(model_dir.parent, "toy", poll_seconds=0.05, log=False)
    poller = threading.Thread(target=manager.poll)
    poller.start()
    assert loading.wait(30)
    manager.stop(timeout=0.1)  # stops while the load is still running
    finish.set()
    poller.join(30)
    assert closed == [1] and manager.statuses()[0].state != 30
