"""Export verification: reload in a fresh process with both loaders, run every request, compare, check ops and size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfmtl.exporting.ops import check_ops, graph_ops
from tfmtl.serving import signatures as wire

TOLERANCE = 1e-5
SIZE_LIMIT = 1.1  # export size over the bytes of the variables its signatures read
SIZE_CHECK_FROM = 8 << 20  # below this the graph itself, not the weights, dominates the size


@dataclass(frozen=True)
class Verification:
    """What verification measured (written into the manifest)."""

    loaders: tuple[str, ...]
    requests: int
    max_abs_difference: float
    custom_ops: tuple[str, ...]
    minimum_tf_serving: str
    target_tf_serving: str
    size_bytes: int
    weight_bytes: int
    size_ratio: float

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def expected_outputs(functions: Mapping[str, Callable[..., Any]],
                     requests: list[tuple[str, dict[str, np.ndarray]]]) -> list[dict[str, np.ndarray]]:
    """The in-memory module's outputs for each request."""
    out = []
    for signature, inputs in requests:
        result = functions[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        out.append({k: v.numpy() for k, v in result.items()})
    return out


def reload_in_fresh_process(path: Path, requests_file: Path, *, timeout: float = 600) -> tuple[dict, dict]:
    """(report, outputs) of ``reload_check.py`` run on ``path`` with the requests in ``requests_file``."""
    with tempfile.TemporaryDirectory(prefix="tfmtl-verify-") as scratch:
        ops_file = Path(scratch) / "ops.json"
        ops_file.write_text(json.dumps(sorted(graph_ops(path))))
        env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        script = Path(__file__).with_name("reload_check.py")
        done = subprocess.run([sys.executable, str(script), str(path), str(requests_file), str(ops_file), scratch],
                              capture_output=True, text=True, timeout=timeout, env=env)
        report_file = Path(scratch) / "report.json"
        if done.returncode != 0 or not report_file.exists():
            raise RuntimeError(f"export verification: the reload process failed (exit {done.returncode}): "
                               f"{done.stderr[-2000:]}")
        report = json.loads(report_file.read_text())
        outputs_file = Path(scratch) / "outputs.npz"
        outputs: dict = {}
        if outputs_file.exists():
            with np.load(outputs_file) as loaded:
                outputs = {key: loaded[key] for key in loaded.files}
    return report, outputs


def verify_export(path: Path, functions: Mapping[str, Callable[..., Any]],
                  requests: list[tuple[str, dict[str, np.ndarray]]], requests_file: Path, *,
                  inputs: Mapping[str, list[wire.Field]], outputs: Mapping[str, list[wire.Field]],
                  target: str, weight_bytes: int) -> Verification:
    """Raises ValueError/RuntimeError naming what differs; returns the measurements."""
    report, reloaded = reload_in_fresh_process(path, requests_file)
    minimum = check_ops(report["core_missing"], report["tf_text"], target)
    for loader in ("tf2", "tf1"):
        if loader in report["errors"]:
            raise RuntimeError(f"export verification: the {loader.upper()} loader failed on {path}:\n"
                               f"{report['errors'][loader]}")
    check_signature_defs(report["signatures"], inputs, outputs)
    worst = 0.0
    for number, ((signature, _), expected) in enumerate(zip(requests, expected_outputs(functions, requests),
                                                            strict=True)):
        for loader in ("tf2", "tf1"):
            for key, value in expected.items():
                got = reloaded.get(f"{loader}/{number}/{key}")
                worst = max(worst, _compare(value, got, f"{loader.upper()} loader, signature '{signature}', "
                                                        f"output '{key}' (request {number})"))
    size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    ratio = size / max(1, weight_bytes)
    if weight_bytes >= SIZE_CHECK_FROM and ratio > SIZE_LIMIT:
        raise RuntimeError(f"export verification: {path} is {size / 2**20:.1f} MiB, {ratio:.2f}x the "
                           f"{weight_bytes / 2**20:.1f} MiB of weights it reads (limit {SIZE_LIMIT}x): "
                           "some weights are stored twice")
    return Verification(loaders=("tf.saved_model.load", "tf.compat.v1.saved_model.loader.load"),
                        requests=len(requests), max_abs_difference=worst,
                        custom_ops=tuple(report["core_missing"]), minimum_tf_serving=minimum,
                        target_tf_serving=target, size_bytes=size, weight_bytes=weight_bytes,
                        size_ratio=round(ratio, 4))


def check_signature_defs(loaded: Mapping[str, Any], inputs: Mapping[str, list[wire.Field]],
                         outputs: Mapping[str, list[wire.Field]]) -> None:
    """The loaded signature defs carry exactly the contract's keys, dtypes and shapes."""
    for name in (*inputs, wire.DEFAULT):
        if name not in loaded:
            raise RuntimeError(f"export verification: signature '{name}' is missing (have: {', '.join(loaded)})")
    for name, fields in (*[(n, ("inputs", f)) for n, f in inputs.items()],
                         *[(n, ("outputs", f)) for n, f in outputs.items()]):
        side, expected = fields
        got = loaded[name][side]
        want = {f.name: {"dtype": f.dtype, "shape": list(f.shape)} for f in expected}
        if got != want:
            raise RuntimeError(f"export verification: signature '{name}' {side} are {got}, the contract says {want}")


def _compare(expected: np.ndarray, got: np.ndarray | None, where: str) -> float:
    if got is None:
        raise RuntimeError(f"export verification: {where} is missing after reload")
    if expected.dtype == object or expected.dtype.kind in "SU":
        text = np.vectorize(lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b),
                            otypes=[str])(expected) if expected.size else expected.astype(str)
        if text.shape != got.shape or not np.array_equal(text, got):
            raise RuntimeError(f"export verification: {where} differs after reload")
        return 0.0
    if expected.shape != got.shape:
        raise RuntimeError(f"export verification: {where} has shape {got.shape} after reload, {expected.shape} "
                           "in memory")
    difference = float(np.max(np.abs(expected.astype(np.float64) - got))) if expected.size else 0.0
    if not difference <= TOLERANCE:
        raise RuntimeError(f"export verification: {where} differs by {difference:.2e} after reload "
                           f"(tolerance {TOLERANCE})")
    return difference


def weight_bytes(functions: Mapping[str, Any]) -> int:
    """Bytes of the distinct variables the signature functions read."""
    seen: dict[int, int] = {}
    for function in functions.values():
        for variable in function.variables:
            if id(variable) in seen:
                continue
            if variable.dtype == tf.string:
                seen[id(variable)] = int(sum(len(v) for v in np.asarray(variable.numpy()).reshape(-1)))
            else:
                seen[id(variable)] = int(np.prod(variable.shape)) * variable.dtype.size
    return sum(seen.values())
