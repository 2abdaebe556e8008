"""The ``tfmtl`` console script. Subcommands call the same functions the notebooks call.

``--json`` prints exactly one JSON object on stdout; logs and progress go to stderr.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tfmtl._version import __version__
from tfmtl.data.errors import DataError

DATASET_HELP = "ml-100k | ml-1m | ml-1m-overviews | path to a schema file"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help(sys.stderr)
        return 2
    try:
        result = args.handler(args)
    except (DataError, ValueError, RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        message = _one_line(error)
        if getattr(args, "json", False):
            print(json.dumps({"error": message, "type": type(error).__name__}))
        print(f"tfmtl: error: {message}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(result, sort_keys=False, default=str))
    return 0


def _one_line(error: BaseException) -> str:
    """The error as one line; a disk or permission error names its path, a time-out its command."""
    if isinstance(error, OSError) and not isinstance(error, FileNotFoundError) and error.filename:
        return f"{error.strerror or error}: {error.filename}"
    if isinstance(error, subprocess.TimeoutExpired):
        return f"timed out after {error.timeout:g} s: {' '.join(map(str, error.cmd))[:200]}"
    return " ".join(str(error).split("\n")).strip()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfmtl", description="Multi-task recommendation on TensorFlow.")
    parser.add_argument("--version", action="version", version=f"tfmtl {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    data = commands.add_parser("data", help="inspect datasets and splits")
    data_commands = data.add_subparsers(title="data commands", metavar="COMMAND")

    info = data_commands.add_parser("info", help="counts and features of a dataset")
    _dataset_argument(info)
    info.set_defaults(handler=_data_info)

    split = data_commands.add_parser("split", help="sizes of a deterministic train/test split")
    _dataset_argument(split)
    split.add_argument("--strategy", choices=("tfrs", "time", "leave_last"), default="tfrs",
                       help="tfrs: the TFRS tutorial protocol; time: global time cutoff; leave_last: per user")
    split.add_argument("--leave-last", type=int, default=1, metavar="N", help="test rows per user (leave_last)")
    split.set_defaults(handler=_data_split)

    train = commands.add_parser("train", help="train the multi-task model into a run folder")
    train.add_argument("--config", metavar="FILE", help="JSON or YAML config (absent fields keep defaults)")
    train.add_argument("--dataset", metavar="DATASET", help=DATASET_HELP)
    train.add_argument("--encoder", metavar="PRESET",
                       help="minilm-l6 | paraphrase-minilm-l3 | bge-small-en-v1.5 (with encoder.pooling: cls in "
                            "--config) | tiny | keras-hub preset | local folder (e.g. a pretrain output's preset)")
    train.add_argument("--epochs", type=int, metavar="N", help="maximum epochs (early stopping may end sooner)")
    train.add_argument("--output", metavar="RUN_DIR",
                       help="run folder (default: a new runs/<dataset>-<date>-<time>)")
    train.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint")
    train.add_argument("--strategy", choices=("default", "mirrored", "multi_worker"),
                       help="tf.distribute strategy (default: the config's train.strategy, else one device); "
                            "multi_worker reads TF_CONFIG; the batch size is global")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="test metrics of a run's best weights")
    evaluate.add_argument("--run", required=True, metavar="RUN_DIR", help="a run folder from `tfmtl train`")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    evaluate.set_defaults(handler=_evaluate)

    export = commands.add_parser("export", help="export a run as the next version of a TF Serving model")
    export.add_argument("--run", required=True, metavar="RUN_DIR", help="a run folder from `tfmtl train`")
    export.add_argument("--name", required=True, metavar="NAME", help="the model name TF Serving serves it as")
    export.add_argument("--base", default="saved_models", metavar="DIR",
                        help="model base folder: versions go to DIR/NAME/<version> (default: saved_models)")
    export.add_argument("--max-k", type=int, metavar="K", help="the largest k retrieve accepts (default 1000)")
    export.add_argument("--tf-serving-version", metavar="X.Y",
                        help="the TF Serving the export must load on; its ops are checked (default 2.20)")
    export.add_argument("--no-verify", action="store_true", help="skip the reload-and-compare verification")
    export.add_argument("--user-snapshot", choices=("all", "none"), default="all",
                        help="all: keep each known user's features and newest history, so a user id alone is "
                             "enough (default); none: keep no per-user state, requests send features and history")
    export.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    export.set_defaults(handler=_export)

    promote = commands.add_parser("promote", help="move the canary or stable label of a TF Serving model "
                                                  "(rewrites NAME/models.config in the order TF Serving accepts)")
    promote.add_argument("--base", default="saved_models", metavar="DIR", help="model base folder (default: "
                                                                                "saved_models)")
    promote.add_argument("--name", required=True, metavar="NAME", help="the model name")
    moved = promote.add_mutually_exclusive_group(required=True)
    moved.add_argument("--canary", type=int, metavar="V", help="serve version V as canary beside stable")
    moved.add_argument("--stable", type=int, metavar="V", help="serve version V alone as stable (promote, roll back)")
    promote.add_argument("--address", metavar="HOST:PORT",
                         help="the TF Serving to ask whether a newly loaded version is AVAILABLE before labelling it "
                              "(without it: run the command again once it is)")
    promote.add_argument("--wait", type=float, default=300.0, metavar="SECONDS",
                         help="how long to wait for that version (default 300)")
    promote.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    promote.set_defaults(handler=_promote)

    serve = commands.add_parser("serve", help="a local TF-Serving-compatible gRPC server (development, demos)")
    serve.add_argument("--model-base", required=True, metavar="DIR", help="the export base, e.g. saved_models")
    serve.add_argument("--name", required=True, metavar="NAME", help="the model: DIR/NAME/<version>")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500, as TF Serving)")
    serve.add_argument("--max-message-mib", type=int, default=16, metavar="MIB",
                       help="largest request or response in MiB (default 16); larger ones get RESOURCE_EXHAUSTED")
    serve.add_argument("--tls-cert", metavar="PEM", help="server certificate chain: serve over TLS")
    serve.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    serve.add_argument("--tls-client-ca", metavar="PEM", help="require client certificates signed by this CA")
    serve.add_argument("--insecure", action="store_true",
                       help="allow a non-loopback --host without TLS (plaintext, unauthenticated)")
    serve.set_defaults(handler=_serve)

    query = commands.add_parser("query", help="ask a served model for a user's recommendations over gRPC")
    query.add_argument("--address", required=True, metavar="HOST:PORT", help="TF Serving or `tfmtl serve`")
    query.add_argument("--name", required=True, metavar="NAME", help="the served model name")
    query.add_argument("--user-id", required=True, metavar="ID", help="the user (unknown ids work too)")
    query.add_argument("-k", type=int, default=10, help="how many items (default 10)")
    query.add_argument("--exclude", metavar="IDS", default="", help="comma-separated item ids to leave out")
    query.add_argument("--history", metavar="IDS", default="",
                       help="the user's recent item ids, comma-separated, oldest first (read instead of the "
                            "export's snapshot)")
    query.add_argument("--exclude-history", action="store_true", help="also leave out the history's items")
    query.add_argument("--timeout", type=float, default=10.0, help="seconds per attempt (default 10)")
    query.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    query.set_defaults(handler=_query)

    pretrain = commands.add_parser("pretrain", help="masked-LM adaptation of the text encoder on the catalog's texts")
    pretrain.add_argument("--dataset", required=True, metavar="DATASET",
                          help=f"{DATASET_HELP}; its items' text columns are the texts")
    pretrain.add_argument("--encoder", default="minilm-l6", metavar="PRESET",
                          help="the encoder to adapt: minilm-l6 | keras-hub preset | local folder")
    pretrain.add_argument("--output", required=True, metavar="DIR",
                          help="DIR/preset is the adapted encoder (pass it to train --encoder); DIR/pretrain.json the "
                               "report; DIR/checkpoints the checkpoints")
    pretrain.add_argument("--sequence-length", type=int, default=128, metavar="L", help="tokens per text (128)")
    pretrain.add_argument("--trainable-layers", type=int, default=-1, metavar="N",
                          help="top transformer layers that adapt (-1, the default: everything)")
    pretrain.add_argument("--epochs", type=int, default=3, metavar="N", help="passes over the texts (3)")
    pretrain.add_argument("--batch-size", type=int, default=32, metavar="B", help="texts per step (32)")
    pretrain.add_argument("--learning-rate", type=float, default=5e-5, metavar="LR", help="the encoder's (5e-5)")
    pretrain.add_argument("--seed", type=int, default=0, help="masks, held-out texts and the head's initialisation")
    pretrain.add_argument("--resume", action="store_true", help="continue the pretraining in DIR")
    pretrain.add_argument("--no-progress", action="store_true", help="no progress bars")
    pretrain.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    pretrain.set_defaults(handler=_pretrain)

    demo = commands.add_parser("demo", help="the main job: real data, train, evaluate, export, serve, query")
    demo.add_argument("--dataset", default="ml-100k", metavar="DATASET", help=DATASET_HELP)
    demo.add_argument("--epochs", type=int, metavar="N", help="maximum epochs (default: the config's 15)")
    demo.add_argument("--users", metavar="IDS", help="comma-separated user ids to query (default: the first 3)")
    demo.add_argument("--runs", default="runs", metavar="DIR", help="where the run folder goes (default runs)")
    demo.add_argument("--base", default="saved_models", metavar="DIR", help="export base (default saved_models)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    demo.set_defaults(handler=_demo)
    return parser


def _dataset_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET", help=DATASET_HELP)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _data_info(args: argparse.Namespace) -> dict[str, object]:
    from tfmtl.data import load_dataset

    data = load_dataset(args.dataset)
    info = data.info()
    if not args.json:
        _print_table(f"dataset {info['dataset']}", [
            ("ratings", f"{info['ratings']:,}"), ("users", f"{info['users']:,}"),
            ("items", f"{info['items']:,} ({info['rated_items']:,} rated)"),
            ("labels", ", ".join(info["labels"]) or "-"),  # type: ignore[arg-type]
            *[(f"{k}", f"{v}") for k, v in info.items() if k.endswith(("_mean", "_min", "_max"))],
            ("item features", _features(info["item_features"])),
            ("user features", _features(info["user_features"])),
            ("density", f"{info['density']:.4%}"),
            ("source", str(info["source"])),
            ("skipped rows", str(info["skipped_rows"])),
            *[(key.replace("_", " "), _extra(key, value)) for key, value in data.extras.items()],
        ])
        for line in data.skipped.lines():
            print(f"  {line}")
    return info


def _extra(key: str, value: object) -> str:
    """A dataset's own fact (e.g. ml-1m-overviews' coverage) as the table writes it: shares as percentages."""
    if key.endswith("_share") and isinstance(value, float):
        return f"{value:.1%}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _pretrain(args: argparse.Namespace) -> dict[str, object]:
    from tfmtl.config import TextEncoderConfig
    from tfmtl.data import load_dataset
    from tfmtl.encoders.pretrain import PretrainConfig, pretrain

    data = load_dataset(args.dataset)
    columns = data.item_features.text
    if not columns:
        raise ValueError(f"dataset {args.dataset!r} declares no item text column to pretrain on")
    texts = [t for column in columns for t in data.items[column].dropna().astype(str)]
    config = PretrainConfig(encoder=TextEncoderConfig(preset=args.encoder, sequence_length=args.sequence_length,
                                                      trainable_layers=args.trainable_layers),
                            epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                            seed=args.seed)
    report = pretrain(texts, config, args.output, resume=args.resume, progress=not args.no_progress)
    summary = {"preset": report["preset"], "texts": report["texts"],
               "held_out_loss_unadapted": report["unadapted"]["held_out_loss"][-1],
               "held_out_loss_adapted": report["adapted"]["held_out_loss"][-1],
               "steps": report["adapted"]["steps"], "report": str(Path(args.output) / "pretrain.json")}
    if not args.json:
        _print_table(f"pretrained {args.encoder} on {len(texts):,} texts of {data.name} ({', '.join(columns)})", [
            ("held-out masked-LM loss, head only", f"{summary['held_out_loss_unadapted']:.4f}"),
            ("held-out masked-LM loss, adapted", f"{summary['held_out_loss_adapted']:.4f}"),
            ("steps", str(summary["steps"])), ("preset", report["preset"]),
            ("next", f"tfmtl train --encoder {report['preset']} --dataset {args.dataset}")])
    return summary


def _data_split(args: argparse.Namespace) -> dict[str, object]:
    from tfmtl.data import load_dataset, split_interactions

    data = load_dataset(args.dataset)
    options = {"n": args.leave_last} if args.strategy == "leave_last" else {}
    summary = split_interactions(data, args.strategy, **options).summary()
    summary = {"dataset": data.name, **summary}
    if not args.json:
        _print_table(f"split {args.strategy} of {data.name}", [(k, f"{v:,}" if isinstance(v, int) else str(v))
                                                               for k, v in summary.items()])
    return summary


def _train(args: argparse.Namespace) -> dict[str, object]:
    import dataclasses

    from tfmtl.config import Config
    from tfmtl.run import RunFolder
    from tfmtl.training import train

    if args.output is None and args.resume:
        raise ValueError("--resume needs --output RUN_DIR: the run to continue")
    saved = RunFolder(Path(args.output or ".")).config
    if args.config:
        config = Config.from_file(args.config)
    elif args.resume and saved.exists():
        config = Config.from_file(saved)  # resume exactly what was started; only the flags below override it
    else:
        config = Config()
    train_section = config.train
    if args.dataset:
        train_section = dataclasses.replace(train_section, dataset=args.dataset)
    if args.epochs is not None:
        train_section = dataclasses.replace(train_section, epochs=args.epochs)
    if args.strategy:
        train_section = dataclasses.replace(train_section, strategy=args.strategy)
    if train_section.strategy == "multi_worker" and args.output is None:
        raise ValueError("--strategy multi_worker needs --output RUN_DIR: every worker must name the same run folder")
    model_section = config.model
    if args.encoder:
        model_section = dataclasses.replace(model_section,
                                            encoder=dataclasses.replace(model_section.encoder, preset=args.encoder))
    if args.output is None:
        import time

        args.output = f"runs/{Path(train_section.dataset).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = train(Config(model=model_section, train=train_section), output=args.output, resume=args.resume,
                   progress=not args.no_progress)
    summary = {"run": str(result.path), "epochs": len(result.history), **result.metrics}
    if not args.json:
        _print_metrics(f"test metrics ({result.path})", result.metrics)
    return summary


def _evaluate(args: argparse.Namespace) -> dict[str, float]:
    from tfmtl.data import load_dataset
    from tfmtl.evaluate import evaluate_model
    from tfmtl.run import RunFolder, check_data, load_run

    config, model, split = load_run(args.run)
    data = load_dataset(config.train.dataset)
    check_data(RunFolder(Path(args.run)), data)
    metrics = evaluate_model(model, data, split.known, split.test, batch_size=config.train.eval_batch_size)
    if not args.json:
        _print_metrics(f"test metrics ({args.run})", metrics)
    return metrics


def _export(args: argparse.Namespace) -> dict[str, object]:
    import dataclasses

    from tfmtl.config import ExportConfig
    from tfmtl.exporting import export

    defaults = ExportConfig()
    config = dataclasses.replace(defaults, verify=not args.no_verify,
                                 max_k=args.max_k if args.max_k is not None else defaults.max_k,
                                 tf_serving_version=args.tf_serving_version or defaults.tf_serving_version,
                                 user_snapshot=args.user_snapshot)
    result = export(args.run, name=args.name, base=args.base, config=config).to_json()
    if not args.json:
        verification = result["verification"] or {}
        _print_table(f"exported {result['name']} version {result['version']}", [
            ("path", str(result["path"])),
            ("signatures", ", ".join(result["signatures"])),  # type: ignore[arg-type]
            ("max k", str(result["max_k"])),
            ("TF Serving", f">= {result['minimum_tf_serving'] or '? (not verified)'}"),
            ("verified", f"{verification.get('requests', 0)} requests on both loaders, max |diff| "
                         f"{verification.get('max_abs_difference', float('nan')):.1e}" if verification else "no"),
            ("size", f"{verification.get('size_bytes', 0) / 2**20:.1f} MiB" if verification else "-"),
        ])
        print(f"serve it with stock TF Serving:\n  {result['docker']}")
    return result


def _promote(args: argparse.Namespace) -> dict[str, object]:
    from tfmtl.exporting.publish import check_model_name
    from tfmtl.exporting.tf_serving_config import promote

    model_dir = Path(args.base) / check_model_name(args.name)
    is_available = None
    if args.address:
        from tfmtl.serving.client import Client

        def is_available(version: int) -> bool:
            with Client(args.address, args.name, timeout=10) as client:
                return any(s.version == version and s.state == "AVAILABLE" for s in client.status())

    written = promote(model_dir, args.name, canary=args.canary, stable=args.stable, is_available=is_available,
                      wait_seconds=args.wait)
    done = not written[-1].waits_for
    result = {"config": str(model_dir / "models.config"), "steps": [step.to_json() for step in written],
              "done": done}
    if not args.json:
        for number, step in enumerate(written, 1):
            labels = ", ".join(f"{k}={v}" for k, v in step.labels.items()) or "none"
            print(f"step {number}: serve versions {', '.join(map(str, step.versions))}; labels {labels}")
        if not done:
            waiting = ", ".join(map(str, written[-1].waits_for))
            print(f"waiting for version {waiting} to be AVAILABLE in TF Serving (it re-reads models.config every "
                  "--model_config_file_poll_wait_seconds); then run this command again to move the labels")
    return result


def _serve(args: argparse.Namespace) -> None:
    from tfmtl.serving.server import TlsFiles, serve

    if args.max_message_mib < 1:
        raise ValueError(f"--max-message-mib must be at least 1, got {args.max_message_mib}")
    tls = None
    if args.tls_cert or args.tls_key or args.tls_client_ca:
        if not (args.tls_cert and args.tls_key):
            raise ValueError("TLS needs both --tls-cert and --tls-key")
        for option, value in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key),
                              ("--tls-client-ca", args.tls_client_ca)):
            if value and not Path(value).is_file():
                raise ValueError(f"{option}: no such file: {value}")
        tls = TlsFiles(Path(args.tls_cert), Path(args.tls_key),
                       Path(args.tls_client_ca) if args.tls_client_ca else None)
    serve(args.model_base, args.name, host=args.host, port=args.port, max_message_bytes=args.max_message_mib << 20,
          tls=tls, insecure=args.insecure)


def _query(args: argparse.Namespace) -> dict[str, object]:
    from tfmtl.serving.client import Client

    exclude = [item.strip() for item in args.exclude.split(",") if item.strip()]
    history = [item.strip() for item in args.history.split(",") if item.strip()] or None
    with Client(args.address, args.name, timeout=args.timeout) as client:  # its errors are RuntimeErrors
        result = (client.recommend_excluding(args.user_id, exclude, k=args.k, history=history,
                                             exclude_history=args.exclude_history)
                  if exclude or args.exclude_history else client.recommend(args.user_id, k=args.k, history=history))
    if not args.json:
        sent = f", history of {len(history)} item(s)" if history else ""
        print(f"top {args.k} for user {args.user_id}{sent} ({args.name} version {result.version} at {args.address})")
        if result.history_dropped:
            print(f"  note: the model read the newest items of the history; {result.history_dropped} older one(s) "
                  "were dropped")
        for rank, item in enumerate(result, 1):
            print(f"  {rank:>2}. {item.title or item.item_id:<60.60} {item.score:6.3f}  (item {item.item_id})")
    return {"user_id": result.user_id, "version": result.version, "history_dropped": result.history_dropped,
            "items": [{"item_id": r.item_id, "title": r.title, "score": r.score} for r in result]}


def _demo(args: argparse.Namespace) -> dict[str, object]:
    from tfmtl.demo import run_demo

    users = [u for u in args.users.split(",") if u] if args.users else None
    return run_demo(dataset=args.dataset, runs=args.runs, base=args.base, users=users, epochs=args.epochs,
                    progress=not args.no_progress, show=not args.json)


def _print_metrics(title: str, metrics: dict[str, float]) -> None:
    _print_table(title, [(name, f"{value:.4f}") for name, value in metrics.items()])


def _features(groups: object) -> str:
    parts = [f"{role}: {', '.join(cols)}" for role, cols in dict(groups).items() if cols]  # type: ignore[call-overload]
    return "; ".join(parts) or "-"


def _print_table(title: str, rows: Sequence[tuple[str, str]], write: Callable[[str], None] = print) -> None:
    width = max(len(k) for k, _ in rows)
    write(title)
    for key, value in rows:
        write(f"  {key:<{width}}  {value}")


if __name__ == "__main__":
    sys.exit(main())
