"""Soak: N clients for T minutes against the local server while a new version is published every M seconds.

    .venv/bin/python benchmarks/soak.py --model-base saved_models --name movielens --minutes 3 --swap-seconds 30

Works on a copy of the model folder (the original is untouched). Each swap copies the served version into a hidden
folder and renames it to the next number, as an export does; the server must pick it up without failing a request.
Reports requests, errors (must be 0), p50/p99 latency, versions served, and the server's RSS at start and end.
Writes benchmarks/results/soak.{json,md}. Bounded in time and count; only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving_load import RESULTS, make_requests, start_server  # noqa: E402

from tfmtl.serving import signatures as wire  # noqa: E402
from tfmtl.serving.client import Client  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base", default="saved_models")
    parser.add_argument("--name", default="movielens")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--swap-seconds", type=float, default=30.0)
    args = parser.parse_args()
    source = Path(args.model_base) / args.name
    newest = max(int(p.name) for p in source.iterdir() if p.name.isdigit())

    with tempfile.TemporaryDirectory(prefix="tfmtl-soak-") as scratch:
        model_dir = Path(scratch) / args.name
        model_dir.mkdir()
        shutil.copytree(source / str(newest), model_dir / "1")
        process, address = start_server(Path(scratch), args.name)
        try:
            with Client(address, args.name, timeout=30) as client:
                manifest = json.loads((model_dir / "1" / "assets.extra" / "tfmtl_export.json").read_text())
                catalog = [r.item_id for r in client.recommend("1", k=min(200, manifest["catalog_size"]))]
                users = [str(u) for u in range(1, manifest["known_users"] + 1)]
                requests = make_requests(client, catalog, users, k=10, candidates=20, count=200, seed=1,
                                         history_length=manifest.get("history_length") or 0)
            rss_start = rss_mib(process.pid)
            stop = threading.Event()
            latencies: list[list[float]] = [[] for _ in range(args.clients)]
            errors: list[str] = []
            versions: set[int] = set()

            def worker(slot: int) -> None:
                # No retries: a request that fails during a swap is counted, not hidden by a second attempt.
                with Client(address, args.name, timeout=10, retries=0) as client:
                    n = slot
                    while not stop.is_set() and len(latencies[slot]) < 5_000_000:
                        signature = wire.RETRIEVE if n % 2 == 0 else wire.RANK
                        began = time.perf_counter()
                        try:
                            client.predict(signature, requests[signature][n % 200], cast=False)
                            latencies[slot].append(time.perf_counter() - began)
                        except Exception as error:  # counted: the soak's verdict
                            errors.append(f"{type(error).__name__}: {error}"[:300])
                        n += args.clients

            def watch() -> None:
                with Client(address, args.name, timeout=10, retries=3) as client:
                    while not stop.wait(0.5):
                        versions.update(s.version for s in client.status() if s.state == "AVAILABLE")

            threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(args.clients)]
            threads.append(threading.Thread(target=watch))
            for thread in threads:
                thread.start()
            started, published = time.monotonic(), 1
            deadline = started + args.minutes * 60
            while time.monotonic() < deadline:
                time.sleep(min(args.swap_seconds, max(0.0, deadline - time.monotonic())))
                if time.monotonic() >= deadline:
                    break
                staging = model_dir / f".staging-{published + 1}"
                shutil.copytree(model_dir / str(published), staging)
                os.rename(staging, model_dir / str(published + 1))
                published += 1
                for old in range(1, published - 1):  # keep the served and the previous version
                    shutil.rmtree(model_dir / str(old), ignore_errors=True)
                print(f"published version {published} at {time.monotonic() - started:.0f} s", file=sys.stderr)
            time.sleep(3)  # let the last swap land
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
            rss_end = rss_mib(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)

    merged = np.array([x for slot in latencies for x in slot])
    result = {
        "settings": {"clients": args.clients, "minutes": args.minutes, "swap_seconds": args.swap_seconds,
                     "model": args.name, "signatures": "retrieve k=10 and rank C=20, alternating, batch 1"},
        "requests": int(merged.size + len(errors)), "errors": len(errors), "error_examples": errors[:5],
        "qps": merged.size / (args.minutes * 60), "p50_ms": float(np.percentile(merged, 50) * 1e3),
        "p99_ms": float(np.percentile(merged, 99) * 1e3), "versions_published": published,
        "versions_seen_available": sorted(versions), "server_rss_mib": {"start": rss_start, "end": rss_end},
        "rss_growth_mib": rss_end - rss_start, "client_retries": 0,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Soak: {args.clients} clients for {args.minutes:g} min, a new version every {args.swap_seconds:g} s",
             "", "| requests | errors | QPS | p50 ms | p99 ms | versions published / seen | server RSS start → end |",
             "|---|---|---|---|---|---|---|",
             f"| {result['requests']:,} | {result['errors']} | {result['qps']:.0f} | {result['p50_ms']:.2f} | "
             f"{result['p99_ms']:.2f} | {published} / {len(versions)} | {rss_start:.0f} → {rss_end:.0f} MiB "
             f"({rss_end - rss_start:+.0f}) |", "",
             "Command: `.venv/bin/python benchmarks/soak.py`; local server on 127.0.0.1, 2-CPU machine shared with the "
             "clients, which do not retry (retries=0): every failed request is counted. RSS includes every version "
             "loaded so far minus those unloaded."]
    (RESULTS / "soak.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
