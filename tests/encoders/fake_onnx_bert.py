"""A tiny random BERT written as an ONNX graph the way PyTorch exports sentence-transformers models, and a NumPy
forward pass over the same weights (the reference the converted folder must reproduce).

Only NumPy and onnx are imported, so the graph can also be checked against onnxruntime where that is installed.
The graph follows the export of paraphrase-MiniLM-L3-v2: parameters named ``model.0.auto_model.…``, each Linear a
``MatMul`` by an anonymous [in, out] initializer (``onnx::MatMul_N``) followed by an ``Add`` of its bias,
``LayerNormalization`` nodes, heads split by ``Reshape`` to [0, 0, heads, head size], exact GELU through ``Erf``.
With ``quantize`` it follows onnxruntime's dynamic int8 quantisation, as in the export bge-small-en-v1.5 ships as:
each Linear weight int8 with a scale and zero point per output column, read by ``MatMulInteger`` after a
``DynamicQuantizeLinear`` of its input, then ``Cast`` and a rescaling ``Mul`` before the bias ``Add``; each embedding
table uint8 with one scale and zero point, read by ``Gather`` + ``DequantizeLinear``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PREFIX = "model.0.auto_model."
HIDDEN, HEADS, INTERMEDIATE, LAYERS, POSITIONS = 8, 2, 16, 1, 32
LINEARS = {"attention.self.query": (HIDDEN, HIDDEN), "attention.self.key": (HIDDEN, HIDDEN),
           "attention.self.value": (HIDDEN, HIDDEN), "attention.output.dense": (HIDDEN, HIDDEN),
           "intermediate.dense": (INTERMEDIATE, HIDDEN), "output.dense": (HIDDEN, INTERMEDIATE)}
MASKED = -10000.0


def fake_weights(vocabulary_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random torch-style parameters (Linear weights [out, in]) by their Hugging Face names."""
    rng = np.random.default_rng(seed)

    def normal(*shape: int, scale: float = 0.5) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    weights = {"embeddings.word_embeddings.weight": normal(vocabulary_size, HIDDEN),
               "embeddings.position_embeddings.weight": normal(POSITIONS, HIDDEN),
               "embeddings.token_type_embeddings.weight": normal(2, HIDDEN),
               "embeddings.LayerNorm.weight": 1 + normal(HIDDEN, scale=0.1),
               "embeddings.LayerNorm.bias": normal(HIDDEN, scale=0.1)}
    for i in range(LAYERS):
        for name, shape in LINEARS.items():
            weights[f"encoder.layer.{i}.{name}.weight"] = normal(*shape)
            weights[f"encoder.layer.{i}.{name}.bias"] = normal(shape[0], scale=0.1)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            weights[f"encoder.layer.{i}.{norm}.weight"] = 1 + normal(HIDDEN, scale=0.1)
            weights[f"encoder.layer.{i}.{norm}.bias"] = normal(HIDDEN, scale=0.1)
    return weights


TABLES = ("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
          "embeddings.token_type_embeddings.weight")


def quantized(weights: dict[str, np.ndarray], seed: int = 1) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(``<name>_quantized``/``_scale``/``_zero_point`` of each embedding table and Linear weight, the weights those
    stand for: ``(q - zero point) * scale``, float32). Linear weights in the ONNX layout [in, out], a scale and zero
    point per output column, int8; tables uint8 with one scale; zero points off centre, so that they count."""
    rng = np.random.default_rng(seed)
    parts: dict[str, np.ndarray] = {}
    dequantized = dict(weights)
    for name, value in weights.items():
        table = name in TABLES
        if not table and not (name.endswith(".weight") and "LayerNorm" not in name):
            continue
        matrix = value if table else value.T
        if table:
            zero = np.array(128 + rng.integers(-5, 6), np.uint8)
            scale = np.array(np.abs(matrix).max() / 120, np.float32)
            q = np.clip(np.round(matrix / scale) + float(zero), 0, 255).astype(np.uint8)
        else:
            zero = rng.integers(-5, 6, matrix.shape[1]).astype(np.int8)
            scale = (np.abs(matrix).max(0) / 120).astype(np.float32)
            q = np.clip(np.round(matrix / scale) + zero, -128, 127).astype(np.int8)
        parts.update({f"{name}_quantized": q, f"{name}_scale": scale, f"{name}_zero_point": zero})
        restored = (q.astype(np.float32) - zero.astype(np.float32)) * scale
        dequantized[name] = restored if table else np.ascontiguousarray(restored.T)
    return parts, dequantized


def write_fake_onnx_bert(path: Path, weights: dict[str, np.ndarray], *, reshape_heads: int = HEADS,
                         quantize: bool = False, spelled_out_norms: bool = False, epsilon: float = 1e-12) -> Path:
    """The ONNX graph input_ids, attention_mask [B, L] int64 -> last_hidden_state [B, L, H] over ``weights`` (with
    ``quantize``, over their int8 forms: see :func:`quantized`). ``spelled_out_norms``: each layer normalisation as
    ReduceMean, Sub, Pow, ReduceMean, Add (epsilon), Sqrt, Div, Mul, Add, as older exports write it."""
    nodes: list[onnx.NodeProto] = []
    initializers = [numpy_helper.from_array(value, PREFIX + name) for name, value in weights.items()
                    if (not name.endswith(".weight") or "LayerNorm" in name or "embeddings" in name)
                    and not (quantize and name in TABLES)]
    parts = quantized(weights)[0] if quantize else {}
    counter = iter(range(100, 10_000))

    def constant(value: np.ndarray) -> str:
        name = f"/Constant_{next(counter)}_output_0"
        nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name)))
        return name

    def node(op: str, inputs: list[str], **attributes: object) -> str:
        output = f"/{op}_{next(counter)}_output_0"
        nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    def outputs(op: str, inputs: list[str], count: int) -> list[str]:
        names = [f"/{op}_{next(counter)}_output_{i}" for i in range(count)]
        nodes.append(helper.make_node(op, inputs, names))
        return names

    def linear(x: str, name: str) -> str:
        weight = f"onnx::MatMul_{next(counter)}"  # anonymous, [in, out]: the torch weight transposed
        if not quantize:
            initializers.append(numpy_helper.from_array(np.ascontiguousarray(weights[f"{name}.weight"].T), weight))
            return node("Add", [PREFIX + f"{name}.bias", node("MatMul", [x, weight])])  # bias first, as torch writes
        for suffix in ("_quantized", "_scale", "_zero_point"):
            initializers.append(numpy_helper.from_array(parts[f"{name}.weight{suffix}"], weight + suffix))
        x_q, x_scale, x_zero = outputs("DynamicQuantizeLinear", [x], 3)
        product = node("Cast", [node("MatMulInteger", [x_q, weight + "_quantized", x_zero, weight + "_zero_point"])],
                       to=TensorProto.FLOAT)
        rescaled = node("Mul", [product, node("Mul", [x_scale, weight + "_scale"])])
        return node("Add", [PREFIX + f"{name}.bias", rescaled])

    def embedding(table: str, ids: str) -> str:
        if not quantize:
            return node("Gather", [PREFIX + table, ids])
        for suffix in ("_quantized", "_scale", "_zero_point"):
            initializers.append(numpy_helper.from_array(parts[table + suffix], PREFIX + table + suffix))
        rows = node("Gather", [PREFIX + table + "_quantized", ids])
        return node("DequantizeLinear", [rows, PREFIX + table + "_scale", PREFIX + table + "_zero_point"])

    def layer_norm(x: str, name: str) -> str:
        if not spelled_out_norms:
            return node("LayerNormalization", [x, PREFIX + f"{name}.weight", PREFIX + f"{name}.bias"], axis=-1,
                        epsilon=epsilon)
        centred = node("Sub", [x, node("ReduceMean", [x], axes=[-1])])
        variance = node("ReduceMean", [node("Pow", [centred, constant(np.array(2.0, np.float32))])], axes=[-1])
        deviation = node("Sqrt", [node("Add", [variance, constant(np.array(epsilon, np.float32))])])
        return node("Add", [node("Mul", [node("Div", [centred, deviation]), PREFIX + f"{name}.weight"]),
                            PREFIX + f"{name}.bias"])

    length = node("Unsqueeze", [node("Gather", [node("Shape", ["input_ids"]), constant(np.array(1, np.int64))],
                                     axis=0), constant(np.array([0], np.int64))])
    positions = node("Slice", [constant(np.arange(POSITIONS, dtype=np.int64)[None]), constant(np.array([0])),
                               length, constant(np.array([1]))])
    segments = node("Mul", ["input_ids", constant(np.array(0, np.int64))])
    x = node("Add", [node("Add", [embedding("embeddings.word_embeddings.weight", "input_ids"),
                                  embedding("embeddings.token_type_embeddings.weight", segments)]),
                     embedding("embeddings.position_embeddings.weight", positions)])
    x = layer_norm(x, "embeddings.LayerNorm")
    mask = node("Cast", [node("Unsqueeze", ["attention_mask", constant(np.array([1, 2], np.int64))])],
                to=TensorProto.FLOAT)
    mask = node("Mul", [node("Sub", [constant(np.array(1.0, np.float32)), mask]),
                        constant(np.array(MASKED, np.float32))])
    head_size = HIDDEN // HEADS
    split = constant(np.array([0, 0, reshape_heads, HIDDEN // reshape_heads], np.int64))
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        q, k, v = (node("Reshape", [linear(x, p + f"attention.self.{n}"), split]) for n in ("query", "key", "value"))
        q, v = (node("Transpose", [t], perm=[0, 2, 1, 3]) for t in (q, v))
        k = node("Transpose", [k], perm=[0, 2, 3, 1])
        scores = node("Div", [node("MatMul", [q, k]), constant(np.array(math.sqrt(head_size), np.float32))])
        attention = node("MatMul", [node("Softmax", [node("Add", [scores, mask])], axis=-1), v])
        attention = node("Reshape", [node("Transpose", [attention], perm=[0, 2, 1, 3]),
                                     constant(np.array([0, 0, HIDDEN], np.int64))])
        x = layer_norm(node("Add", [linear(attention, p + "attention.output.dense"), x]),
                       p + "attention.output.LayerNorm")
        inner = linear(x, p + "intermediate.dense")
        erf = node("Erf", [node("Div", [inner, constant(np.array(math.sqrt(2.0), np.float32))])])
        inner = node("Mul", [node("Mul", [inner, node("Add", [erf, constant(np.array(1.0, np.float32))])]),
                             constant(np.array(0.5, np.float32))])
        x = layer_norm(node("Add", [linear(inner, p + "output.dense"), x]), p + "output.LayerNorm")
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))
    graph = helper.make_graph(
        nodes, "fake_bert",
        [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "length"])
         for name in ("input_ids", "attention_mask")],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "length", HIDDEN])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tfmtl-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def numpy_bert(ids: list[int], weights: dict[str, np.ndarray]) -> np.ndarray:
    """Last hidden states [L, H] of one unpadded sequence, in float64 (exact GELU)."""
    w = {name: value.astype(np.float64) for name, value in weights.items()}

    def layer_norm(x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-12) * w[name + ".weight"] + w[name + ".bias"]

    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][: len(ids)]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(x, "embeddings.LayerNorm")
    head_size = HIDDEN // HEADS
    erf = np.vectorize(math.erf)
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."

        def dense(v: np.ndarray, name: str, p: str = p) -> np.ndarray:
            return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (dense(x, f"attention.self.{n}").reshape(len(ids), HEADS, head_size).transpose(1, 0, 2)
                   for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_size)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attention = ((scores / scores.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(len(ids), HIDDEN)
        x = layer_norm(x + dense(attention, "attention.output.dense"), p + "attention.output.LayerNorm")
        inner = dense(x, "intermediate.dense")
        inner = 0.5 * inner * (1.0 + erf(inner / math.sqrt(2.0)))
        x = layer_norm(x + dense(inner, "output.dense"), p + "output.LayerNorm")
    return x
