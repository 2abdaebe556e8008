"""Reloads an export the way its consumers do, in a fresh process that imports no tfmtl code.

Run as a script: ``python reload_check.py SAVED_MODEL REQUESTS_TFRECORD OPS_JSON OUT_DIR``. It

1. reports which graph ops core TensorFlow lacks, and which of those TF Text registers;
2. loads with ``tf.saved_model.load`` (TF2) and with ``tf.compat.v1.saved_model.loader.load`` (the TF1 session
   loader TF Serving uses), and runs every request (PredictionLog records, as TF Serving's warmup replays them)
   by signature, the TF1 way by the signature's tensor names;
3. writes ``report.json`` (ops, errors, the loaded signature defs) and ``outputs.npz`` (``tf1/N/key``, ``tf2/N/key``).
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import numpy as np


def main(saved_model: str, requests_path: str, ops_json: str, out_dir: str) -> int:
    import tensorflow as tf
    from tensorflow.python.framework import op_def_registry

    out = Path(out_dir)
    report: dict = {"errors": {}}
    ops = json.loads(Path(ops_json).read_text())
    report["core_missing"] = sorted(op for op in ops if op_def_registry.get(op) is None)
    import tensorflow_text  # noqa: F401  (registers the TF Text ops, as TF Serving links them)

    report["tf_text"] = sorted(op for op in report["core_missing"] if op_def_registry.get(op) is not None)
    if set(report["core_missing"]) - set(report["tf_text"]):
        report["errors"]["ops"] = "unregistered ops; not loading"
        (out / "report.json").write_text(json.dumps(report))
        return 0

    requests = _read_requests(requests_path)
    outputs: dict[str, np.ndarray] = {}
    try:
        module = tf.saved_model.load(saved_model)
        for number, (signature, inputs) in enumerate(requests):
            function = module.signatures[signature]
            for key, value in function(**{k: tf.constant(v) for k, v in inputs.items()}).items():
                outputs[f"tf2/{number}/{key}"] = _plain(value.numpy())
    except Exception:  # the report carries every failure to the exporting process
        report["errors"]["tf2"] = traceback.format_exc(limit=3)
    try:
        with tf.compat.v1.Session(graph=tf.Graph()) as session:
            meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], saved_model)
            report["signatures"] = {
                name: {side: {key: {"dtype": tf.as_dtype(info.dtype).name,
                                    "shape": [None if d.size < 0 else d.size for d in info.tensor_shape.dim]}
                              for key, info in getattr(definition, side).items()}
                       for side in ("inputs", "outputs")}
                for name, definition in meta.signature_def.items() if not name.startswith("__")}  # init op
            for number, (signature, inputs) in enumerate(requests):
                definition = meta.signature_def[signature]
                feed = {definition.inputs[key].name: value for key, value in inputs.items()}
                fetch = {key: info.name for key, info in definition.outputs.items()}
                for key, value in session.run(fetch, feed).items():
                    outputs[f"tf1/{number}/{key}"] = _plain(value)
    except Exception:
        report["errors"]["tf1"] = traceback.format_exc(limit=3)
    np.savez(out / "outputs.npz", **outputs)  # type: ignore[arg-type]
    (out / "report.json").write_text(json.dumps(report))
    return 0


def _read_requests(path: str) -> list[tuple[str, dict[str, np.ndarray]]]:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    requests = []
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        requests.append((request.model_spec.signature_name or "serving_default",
                         {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}))
    return requests


def _plain(value: np.ndarray) -> np.ndarray:
    """Strings as unicode arrays, so the file needs no pickle."""
    if value.dtype == object:
        return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[str])(value) if value.size else \
            value.astype(str)
    return value


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
