"""Which ops outside core TensorFlow an export uses, and whether a given stock TF Serving version has them.

Stock TF Serving links TF Text's op library at a pinned version and no other custom op (ScaNN, for instance, is
absent): TF Serving 2.20 bundles TF Text 2.20.0; 2.12–2.19 bundle TF Text 2.12.1, which lacks the newer
``TFText>…`` kernels such as ``TFText>RoundRobinTrim`` (tensorflow/serving#2267); 2.8–2.9 lack FastWordpiece.
Only what was verified is claimed: a ``TFText>`` op needs 2.20, FastWordpiece / FastBertNormalize need 2.12.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

DEFAULT_TF_SERVING = "2.20"
OLDEST_TF_SERVING = "2.8"


def parse_version(version: str) -> tuple[int, int]:
    try:
        major, minor = (int(part) for part in str(version).split(".")[:2])
    except ValueError:
        raise ValueError(f"TF Serving version {version!r} is not MAJOR.MINOR (e.g. '2.20')") from None
    return major, minor


def minimum_tf_serving(op: str) -> str:
    """The oldest stock TF Serving that runs TF Text op ``op``."""
    if op.startswith("TFText>"):
        return "2.20"
    if op.startswith(("FastWordpiece", "FastBertNormalize")):
        return "2.12"
    return OLDEST_TF_SERVING


def graph_ops(saved_model: Path) -> set[str]:
    """Every op type in a SavedModel's graph and its function library."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(saved_model) / "saved_model.pb").read_bytes())
    ops: set[str] = set()
    for meta_graph in proto.meta_graphs:
        graph = meta_graph.graph_def
        ops |= {node.op for node in graph.node}
        ops |= {node.op for function in graph.library.function for node in function.node_def}
    return ops


def check_ops(custom_ops: Iterable[str], tf_text_ops: Iterable[str], target: str = DEFAULT_TF_SERVING) -> str:
    """Raises ValueError with the remedy unless TF Serving ``target`` runs every custom op; returns the minimum
    TF Serving version the export needs.

    ``custom_ops``: ops outside core TensorFlow; ``tf_text_ops``: those of them that TF Text registers.
    """
    wanted = parse_version(target)
    if wanted < parse_version(OLDEST_TF_SERVING):
        raise ValueError(f"target TF Serving {target} is older than the oldest supported, {OLDEST_TF_SERVING}")
    text_ops = set(tf_text_ops)
    foreign = sorted(set(custom_ops) - text_ops)
    if foreign:
        raise ValueError(f"the export uses op(s) {', '.join(foreign)} that are neither core TensorFlow nor TF Text; "
                         "stock TF Serving cannot load them (ScaNN indexes, for one, need a custom server build). "
                         "Use exact brute-force retrieval, which tfmtl's retrieve signature does")
    needed = OLDEST_TF_SERVING
    for op in sorted(text_ops):
        minimum = minimum_tf_serving(op)
        if parse_version(minimum) > wanted:
            remedy = (" Export with encoder truncate='waterfall' (no trimmer op) for TF Serving <= 2.19."
                      if "Trim" in op else f" Serve with TF Serving >= {minimum}.")
            raise ValueError(f"op {op} needs TF Serving >= {minimum}, but the target is {target}.{remedy}")
        needed = max(needed, minimum, key=parse_version)
    return needed
