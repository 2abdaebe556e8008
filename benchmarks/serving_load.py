"""Load on the local TF-Serving-compatible server: QPS and latency for retrieve (k=10) and rank (C=100).

    .venv/bin/python benchmarks/serving_load.py --model-base saved_models --name movielens   # after `tfmtl demo`

The server runs in its own process (``tfmtl serve`` on a free loopback port); N client threads send requests for T
seconds. Side by side, in this process, the same SavedModel is loaded with the TF1 session loader (as the server
loads it) and each signature is called directly: the ratio of the gRPC p50 (one client) to the in-process p50 is
the cost of the protocol. Each figure is the median of ``--repeats`` runs. Writes
benchmarks/results/serving_load.{json,md}. Every loop is bounded in count and time; only 127.0.0.1 is contacted.
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
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tfmtl  # noqa: E402,F401  (the Keras guard first)
from tfmtl.serving import signatures as wire  # noqa: E402
from tfmtl.serving.client import Client  # noqa: E402
from tfmtl.serving.versions import Servable  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


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
    with Client(address, name, timeout=5, retries=30, backoff=0.5, max_backoff=2.0) as client:
        client.status()  # waits (bounded by the retries) until the server answers
    return process, address


def make_requests(client: Client, catalog: list[str], users: list[str], *, k: int, candidates: int,
                  count: int, seed: int) -> dict[str, list[dict[str, np.ndarray]]]:
    """Raw Predict inputs (batch 1) for retrieve and rank, in the signatures' dtypes."""
    rng = np.random.default_rng(seed)
    metadata = client.metadata().signatures
    out: dict[str, list[dict[str, np.ndarray]]] = {wire.RETRIEVE: [], wire.RANK: []}
    for _ in range(count):
        user = {wire.USER_ID: str(rng.choice(users))}
        retrieve = client._features(metadata[wire.RETRIEVE], [user], set(metadata[wire.RETRIEVE].inputs) - {wire.K})
        retrieve[wire.K] = np.array([k], np.int32)
        out[wire.RETRIEVE].append(retrieve)
        user_keys = set(metadata[wire.USER_EMBEDDING].inputs)
        rank = client._features(metadata[wire.RANK], [user], user_keys)
        items = [{wire.ITEM_ID: str(i)} for i in rng.choice(catalog, candidates, replace=False)]
        flat = client._features(metadata[wire.RANK], items, set(metadata[wire.RANK].inputs) - user_keys, lead=2)
        rank.update({key: value[np.newaxis] for key, value in flat.items()})
        out[wire.RANK].append(rank)
    return out


def in_process_latency(servable: Servable, requests: list[dict[str, np.ndarray]], signature: str,
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


def load(address: str, name: str, requests: list[dict[str, np.ndarray]], signature: str, *, clients: int,
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
    args = parser.parse_args()
    model_dir = Path(args.model_base) / args.name
    version = max(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
    manifest = json.loads((model_dir / str(version) / "assets.extra" / "tfmtl_export.json").read_text())

    process, address = start_server(Path(args.model_base), args.name)
    try:
        with Client(address, args.name, timeout=30) as client:
            catalog_size = manifest["catalog_size"]
            users = [str(u) for u in range(1, manifest["known_users"] + 1)]
            catalog = [r.item_id for r in client.recommend("1", k=min(manifest["max_k"], catalog_size))]
            requests = make_requests(client, catalog, users, k=args.k, candidates=args.candidates, count=200,
                                     seed=0)
        servable = Servable(args.name, version, model_dir / str(version))
        rows: dict[str, dict[str, list[float]]] = {}
        for signature in (wire.RETRIEVE, wire.RANK):
            for repeat in range(args.repeats):
                local = in_process_latency(servable, requests[signature], signature, args.seconds / 3)
                single = load(address, args.name, requests[signature], signature, clients=1,
                              seconds=args.seconds / 3)
                many = load(address, args.name, requests[signature], signature, clients=args.clients,
                            seconds=args.seconds)
                row = rows.setdefault(signature, {})
                row.setdefault("in_process_p50_ms", []).append(float(np.median(local) * 1e3))
                row.setdefault("grpc_p50_ms_1_client", []).append(single["p50_ms"])
                row.setdefault("grpc_p99_ms_1_client", []).append(single["p99_ms"])
                row.setdefault("qps", []).append(many["qps"])
                row.setdefault("p50_ms", []).append(many["p50_ms"])
                row.setdefault("p99_ms", []).append(many["p99_ms"])
                row.setdefault("requests", []).append(many["requests"] + single["requests"])
                row.setdefault("errors", []).append(many["errors"] + single["errors"])
                print(f"{signature} repeat {repeat + 1}: {many['qps']:.0f} QPS, p50 {many['p50_ms']:.2f} ms, "
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
    result = {
        "model": {"name": args.name, "version": version, "catalog_size": manifest["catalog_size"],
                  "encoder": (manifest.get("encoder") or {}).get("preset")},
        "settings": {"clients": args.clients, "seconds": args.seconds, "repeats": args.repeats, "k": args.k,
                     "candidates": args.candidates, "batch": 1},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "results": summary,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serving_load.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Serving load: local server, {args.name} v{version} ({manifest['catalog_size']:,} items), "
             f"{args.clients} clients, batch 1, median of {args.repeats}",
             "", "| signature | QPS | p50 ms | p99 ms | 1-client gRPC p50 ms | in-process p50 ms | gRPC / in-process "
             "| errors |", "|---|---|---|---|---|---|---|---|"]
    for signature, row in summary.items():
        label = f"retrieve k={args.k}" if signature == wire.RETRIEVE else f"rank C={args.candidates}"
        lines.append(f"| {label} | {row['qps']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
                     f"{row['grpc_p50_ms_1_client']:.2f} | {row['in_process_p50_ms']:.2f} | "
                     f"{row['grpc_overhead_ratio']:.2f}x | {row['errors']} of {row['requests']:,} |")
    lines += ["", f"Machine: {os.cpu_count()} CPUs; server and clients share it. Command: "
              "`.venv/bin/python benchmarks/serving_load.py`."]
    (RESULTS / "serving_load.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
