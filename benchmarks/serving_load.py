"""Load on the local TF-Serving-compatible server: QPS and latency for retrieve (k=10) and rank (C=100).

    .venv/bin/python benchmarks/serving_load.py --model-base saved_models --name movielens   # after `tfmtl demo`

The server runs in its own process (``tfmtl serve`` on a free loopback port); N client threads send requests for T
seconds. Side by side, in this process, the same SavedModel is loaded with the TF1 session loader (as the server
loads it) and each signature is called directly: the ratio of the gRPC p50 (one client) to the in-process p50 is
the cost of the protocol. Each figure is the median of ``--repeats`` runs. Writes
benchmarks/results/serving_load.{json,md}. Every loop is bounded in count and time; only 127.0.0.1 is contacted.

Request-time history: retrieve for known users by id alone (the export's snapshot supplies their features and
history; ``history_item_ids`` is one "" padding column) against the same users sending H (``--history-length``,
default the export's) real catalog item ids in ``history_item_ids``. The two are sent alternately, request by
request (A B B A ...), in process and over gRPC with one client, so drifts in machine load hit both alike; the ratio
history / snapshot of the p50s is reported (target <= 1.2x).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tfmtl  # noqa: E402,F401  (the Keras guard first)
from tfmtl.serving import signatures as wire  # noqa: E402
from tfmtl.serving.client import Client  # noqa: E402
from tfmtl.serving.versions import Servable  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
HISTORY_CASE = "retrieve_history"  # retrieve with history_item_ids sent: a row of its own in the results
HISTORY_TARGET = 1.2  # history / snapshot p50, at most
Request = dict[str, np.ndarray]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(base: Path, name: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "tfmtl.cli", "serve", "--model-base", str(base), "--name", name,
               "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    address = f"127.0.0.1:{port}"
    with Client(address, name, timeout=120, retries=100, backoff=0.5, max_backoff=2.0) as client:
        client.status()  # waits (bounded by the retries) until the server answers
    return process, address


def make_requests(client: Client, catalog: list[str], users: list[str], *, k: int, candidates: int,
                  count: int, seed: int, history_length: int) -> dict[str, list[Request]]:
    """Raw Predict inputs (batch 1) for retrieve, retrieve with ``history_length`` item ids (the same users, in the
    same order) and rank, in the signatures' dtypes."""
    rng = np.random.default_rng(seed)
    metadata = client.metadata().signatures
    out: dict[str, list[Request]] = {wire.RETRIEVE: [], HISTORY_CASE: [], wire.RANK: []}
    retrieve_keys = set(metadata[wire.RETRIEVE].inputs) - {wire.K}
    for _ in range(count):
        user = {wire.USER_ID: str(rng.choice(users))}
        # Only the id: every other input is sent missing, history_item_ids as one "" column (the snapshot path).
        retrieve = client._features(metadata[wire.RETRIEVE], [user], retrieve_keys)
        retrieve[wire.K] = np.array([k], np.int32)
        out[wire.RETRIEVE].append(retrieve)
        history = [str(i) for i in rng.choice(catalog, history_length, replace=False)]
        sent = client._features(metadata[wire.RETRIEVE], [{**user, wire.HISTORY_ITEM_IDS: history}], retrieve_keys)
        sent[wire.K] = np.array([k], np.int32)
        out[HISTORY_CASE].append(sent)
        user_keys = set(metadata[wire.USER_EMBEDDING].inputs)
        rank = client._features(metadata[wire.RANK], [user], user_keys)
        items = [{wire.ITEM_ID: str(i)} for i in rng.choice(catalog, candidates, replace=False)]
        flat = client._features(metadata[wire.RANK], items, set(metadata[wire.RANK].inputs) - user_keys, lead=2)
        rank.update({key: value[np.newaxis] for key, value in flat.items()})
        out[wire.RANK].append(rank)
    return out


def in_process_latency(servable: Servable, requests: list[Request], signature: str,
                       seconds: float) -> list[float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    for n in range(100_000):
        if time.perf_counter() > deadline:
            break
        started = time.perf_counter()
        servable.run(signature, requests[n % len(requests)])
        latencies.append(time.perf_counter() - started)
    return latencies


def _summary(latencies: list[float]) -> dict[str, Any]:
    values = np.array(latencies)
    return {"latencies": latencies, "requests": int(values.size), "errors": 0,
            "p50_ms": float(np.percentile(values, 50) * 1e3), "p99_ms": float(np.percentile(values, 99) * 1e3)}


def measure_history_pair(servable: Servable, address: str, name: str, requests: dict[str, list[Request]], *,
                         seconds: float) -> dict[str, dict[str, dict[str, Any]]]:
    """retrieve by id alone and with a history, alternated: in process, then over gRPC with one client.

    Returns case -> {"in_process": ..., "grpc": ...}, each with the latencies and their p50 / p99. A failed request
    raises: a served path that fails must not pass for a fast one.
    """
    snapshot, history = requests[wire.RETRIEVE], requests[HISTORY_CASE]
    local = paired_latency(lambda request: servable.run(wire.RETRIEVE, request), snapshot, history, seconds)
    with Client(address, name, timeout=10, retries=0) as client:
        client.metadata()
        remote = paired_latency(lambda request: client.predict(wire.RETRIEVE, request, cast=False), snapshot,
                                history, seconds)
    return {case: {"in_process": _summary(local[n]), "grpc": _summary(remote[n])}
            for n, case in enumerate((wire.RETRIEVE, HISTORY_CASE))}


def paired_latency(call: Callable[[Request], Any], first: list[Request], second: list[Request],
                   seconds: float) -> tuple[list[float], list[float]]:
    """Latencies of two request lists sent alternately (A B, then B A, ...) for about ``seconds``: whatever else
    the machine does meanwhile slows both alike, and neither always runs right after the other."""
    a: list[float] = []
    b: list[float] = []
    deadline = time.perf_counter() + seconds
    for n in range(100_000):
        if time.perf_counter() > deadline:
            break
        order = ((first, a), (second, b)) if n % 2 == 0 else ((second, b), (first, a))
        for requests, latencies in order:
            started = time.perf_counter()
            call(requests[n % len(requests)])
            latencies.append(time.perf_counter() - started)
    return a, b


def check_history_is_read(client: Client, snapshot: list[Request], history: list[Request],
                          history_length: int) -> dict[str, int]:
    """The history requests must take the request-time path: nothing dropped, and the results change."""
    changed = 0
    for plain, sent in zip(snapshot[:20], history[:20], strict=True):
        by_id = client.predict(wire.RETRIEVE, plain, cast=False)
        with_history = client.predict(wire.RETRIEVE, sent, cast=False)
        dropped = int(np.asarray(with_history[wire.HISTORY_DROPPED]).reshape(-1)[0])
        if dropped:
            raise RuntimeError(f"{wire.HISTORY_ITEM_IDS} with {history_length} items: the server dropped {dropped} "
                               "(the export reads fewer); pass --history-length")
        changed += not np.array_equal(by_id[wire.ITEM_IDS], with_history[wire.ITEM_IDS])
    return {"checked": 20, "results_changed": changed}


def load(address: str, name: str, requests: list[Request], signature: str, *, clients: int,
         seconds: float) -> dict[str, float]:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)

    def worker(slot: int) -> None:
        with Client(address, name, timeout=10, retries=0) as client:
            client.metadata()
            start.wait()
            deadline = time.perf_counter() + seconds
            n = slot
            while time.perf_counter() < deadline and len(latencies[slot]) < 1_000_000:
                began = time.perf_counter()
                try:
                    client.predict(signature, requests[n % len(requests)], cast=False)
                    latencies[slot].append(time.perf_counter() - began)
                except Exception:  # counted, and reported
                    errors[slot] += 1
                n += clients

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    elapsed = time.perf_counter() - began
    merged = np.array([x for slot in latencies for x in slot])
    return {"requests": int(merged.size), "errors": int(sum(errors)), "qps": merged.size / elapsed,
            "p50_ms": float(np.percentile(merged, 50) * 1e3), "p99_ms": float(np.percentile(merged, 99) * 1e3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base", default="saved_models")
    parser.add_argument("--name", default="movielens")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--history-length", type=int,
                        help="item ids sent in history_item_ids (default: the export's history length, H)")
    args = parser.parse_args()
    model_dir = Path(args.model_base) / args.name
    version = max(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
    manifest = json.loads((model_dir / str(version) / "assets.extra" / "tfmtl_export.json").read_text())
    history_length = args.history_length or manifest.get("history_length") or 0
    if history_length < 1 or not manifest.get("known_users"):
        raise ValueError(f"{model_dir / str(version)}: the history comparison needs an export that reads a history "
                         f"(history_length {manifest.get('history_length')}) and holds a user snapshot (known_users "
                         f"{manifest.get('known_users')}); export with --user-snapshot all")

    process, address = start_server(Path(args.model_base), args.name)
    try:
        with Client(address, args.name, timeout=30) as client:
            catalog_size = manifest["catalog_size"]
            users = [str(u) for u in range(1, manifest["known_users"] + 1)]
            catalog = [r.item_id for r in client.recommend("1", k=min(manifest["max_k"], catalog_size))]
            requests = make_requests(client, catalog, users, k=args.k, candidates=args.candidates, count=200,
                                     seed=0, history_length=history_length)
            history_check = check_history_is_read(client, requests[wire.RETRIEVE], requests[HISTORY_CASE],
                                                  history_length)
        servable = Servable(args.name, version, model_dir / str(version))
        rows: dict[str, dict[str, list[float]]] = {}
        cases = {wire.RETRIEVE: wire.RETRIEVE, HISTORY_CASE: wire.RETRIEVE, wire.RANK: wire.RANK}  # case -> signature
        # A session's first run of a signature optimises its graph (seconds): a start-up cost, not a latency.
        for case, signature in cases.items():
            for request in requests[case][:3]:
                servable.run(signature, request)
        # Repeats outside, cases inside: a slow spell of the machine lands on every case, not on one.
        for repeat in range(args.repeats):
            paired = measure_history_pair(servable, address, args.name, requests, seconds=args.seconds / 3)
            for case, signature in cases.items():
                row = rows.setdefault(case, {})
                if case in paired:  # retrieve by id and with a history: their alternated latencies
                    local, single = paired[case]["in_process"]["latencies"], paired[case]["grpc"]
                else:
                    local = in_process_latency(servable, requests[case], signature, args.seconds / 3)
                    single = load(address, args.name, requests[case], signature, clients=1,
                                  seconds=args.seconds / 3)
                many = load(address, args.name, requests[case], signature, clients=args.clients,
                            seconds=args.seconds)
                row.setdefault("in_process_p50_ms", []).append(float(np.median(local) * 1e3))
                row.setdefault("grpc_p50_ms_1_client", []).append(single["p50_ms"])
                row.setdefault("grpc_p99_ms_1_client", []).append(single["p99_ms"])
                row.setdefault("qps", []).append(many["qps"])
                row.setdefault("p50_ms", []).append(many["p50_ms"])
                row.setdefault("p99_ms", []).append(many["p99_ms"])
                row.setdefault("requests", []).append(many["requests"] + single["requests"])
                row.setdefault("errors", []).append(many["errors"] + single["errors"])
                print(f"{case} repeat {repeat + 1}: {many['qps']:.0f} QPS, p50 {many['p50_ms']:.2f} ms, "
                      f"p99 {many['p99_ms']:.2f} ms; 1 client p50 {single['p50_ms']:.2f} ms vs in-process "
                      f"{np.median(local) * 1e3:.2f} ms", file=sys.stderr)
        servable.close()
    finally:
        process.terminate()
        process.wait(timeout=30)

    summary = {}
    for signature, row in rows.items():
        medians = {key: statistics.median(values) for key, values in row.items() if key not in ("requests", "errors")}
        medians["grpc_overhead_ratio"] = medians["grpc_p50_ms_1_client"] / medians["in_process_p50_ms"]
        medians["requests"] = int(sum(row["requests"]))
        medians["errors"] = int(sum(row["errors"]))
        summary[signature] = medians
    snapshot, history = summary[wire.RETRIEVE], summary[HISTORY_CASE]
    comparison: dict[str, Any] = {
        "history_length": history_length, "target_ratio": HISTORY_TARGET, **history_check,
        "ratio_in_process_p50": history["in_process_p50_ms"] / snapshot["in_process_p50_ms"],
        "ratio_grpc_p50_1_client": history["grpc_p50_ms_1_client"] / snapshot["grpc_p50_ms_1_client"],
        # Per repeat too: the spread says how far one ratio can be trusted on this machine.
        "ratio_in_process_p50_per_repeat": [h / s for h, s in zip(rows[HISTORY_CASE]["in_process_p50_ms"],
                                                                  rows[wire.RETRIEVE]["in_process_p50_ms"],
                                                                  strict=True)],
        "ratio_grpc_p50_1_client_per_repeat": [h / s for h, s in zip(rows[HISTORY_CASE]["grpc_p50_ms_1_client"],
                                                                     rows[wire.RETRIEVE]["grpc_p50_ms_1_client"],
                                                                     strict=True)],
    }
    comparison["meets_target"] = bool(max(comparison["ratio_in_process_p50"],
                                          comparison["ratio_grpc_p50_1_client"]) <= HISTORY_TARGET)
    result = {
        "model": {"name": args.name, "version": version, "catalog_size": manifest["catalog_size"],
                  "encoder": (manifest.get("encoder") or {}).get("preset"),
                  "history_length": manifest.get("history_length"), "known_users": manifest.get("known_users")},
        "settings": {"clients": args.clients, "seconds": args.seconds, "repeats": args.repeats, "k": args.k,
                     "candidates": args.candidates, "batch": 1, "history_length": history_length},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "results": summary,
        "history_vs_snapshot": comparison,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serving_load.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Serving load: local server, {args.name} v{version} ({manifest['catalog_size']:,} items), "
             f"{args.clients} clients, batch 1, median of {args.repeats}",
             "", "| signature | QPS | p50 ms | p99 ms | 1-client gRPC p50 ms | in-process p50 ms | gRPC / in-process "
             "| errors |", "|---|---|---|---|---|---|---|---|"]
    labels = {wire.RETRIEVE: f"retrieve k={args.k}, id only (snapshot)",
              HISTORY_CASE: f"retrieve k={args.k}, id + history H={history_length}",
              wire.RANK: f"rank C={args.candidates}"}
    for signature, figures in summary.items():
        lines.append(f"| {labels[signature]} | {figures['qps']:.0f} | {figures['p50_ms']:.2f} | "
                     f"{figures['p99_ms']:.2f} | {figures['grpc_p50_ms_1_client']:.2f} | "
                     f"{figures['in_process_p50_ms']:.2f} | {figures['grpc_overhead_ratio']:.2f}x | "
                     f"{figures['errors']} of {figures['requests']:,} |")
    verdict = "meets" if comparison["meets_target"] else "misses"
    lines += ["", f"## Request-time history vs the snapshot: retrieve k={args.k}, batch 1, known users", "",
              f"The same users, by id alone (features and history from the export's snapshot) and with "
              f"{history_length} real catalog item ids in `history_item_ids`, sent alternately request by request.",
              f"The history changed the top {args.k} for {history_check['results_changed']} of "
              f"{history_check['checked']} users checked (so it is read, not ignored).", "",
              "| p50 ms | id only | id + history | history / id only | per repeat |", "|---|---|---|---|---|",
              f"| in process | {snapshot['in_process_p50_ms']:.2f} | {history['in_process_p50_ms']:.2f} | "
              f"{comparison['ratio_in_process_p50']:.2f}x | "
              + ", ".join(f"{r:.2f}" for r in comparison["ratio_in_process_p50_per_repeat"]) + " |",
              f"| gRPC, 1 client | {snapshot['grpc_p50_ms_1_client']:.2f} | {history['grpc_p50_ms_1_client']:.2f} | "
              f"{comparison['ratio_grpc_p50_1_client']:.2f}x | "
              + ", ".join(f"{r:.2f}" for r in comparison["ratio_grpc_p50_1_client_per_repeat"]) + " |",
              "", f"Target history / id only <= {HISTORY_TARGET}x: {verdict} it.",
              "", f"Machine: {os.cpu_count()} CPUs; server and clients share it. Command: "
              f"`.venv/bin/python benchmarks/serving_load.py {' '.join(sys.argv[1:])}`."]
    (RESULTS / "serving_load.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
