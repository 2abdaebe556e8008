"""Fuzzed gRPC requests: random keys, dtypes, shapes, k, batch sizes, long and invalid-UTF-8 strings.

Each request must end in a TF Serving status (never UNKNOWN/INTERNAL, never a crash or a hang), and the server
must answer the next valid request. The number of examples and each RPC's deadline bound the run.
"""

from __future__ import annotations

import os

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tfmtl.serving import signatures as wire
from tfmtl.serving.server import LocalServer
from tfmtl.serving.tensors import to_proto

CLEAR = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND,
         grpc.StatusCode.RESOURCE_EXHAUSTED}
KEYS = ["user_id", "gender", "age", "history_item_ids", "k", "exclude_item_ids", "exclude_history",
        "item_id", "title", "year", "genres", "rating", "x"]
SIGNATURES = [*wire.SIGNATURES, wire.DEFAULT, "", "nope"]
EXAMPLES = int(os.environ.get("TFMTL_FUZZ_EXAMPLES", "30"))  # more for a deeper run (250 passed)


@pytest.fixture(scope="module")
def stub(exported):  # type: ignore[no-untyped-def]
    with LocalServer(exported.path.parent.parent, "toy", port=0, log=False, max_message_bytes=4 << 20) as server:
        with grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
            yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


strings = st.one_of(st.text(max_size=30), st.binary(max_size=30),  # binary: often invalid UTF-8
                    st.just("x" * 100_000), st.sampled_from(["u0", "i0", "", "\udcff"]))


@st.composite
def tensors(draw):  # type: ignore[no-untyped-def]
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    size = int(np.prod(shape)) if shape else 1
    kind = draw(st.sampled_from(["string", "int32", "int64", "float32", "float64", "bool"]))
    if kind == "string":
        values = [draw(strings) for _ in range(size)]
        array = np.array([v.encode("utf-8", "surrogatepass") if isinstance(v, str) else v for v in values],
                         dtype=object).reshape(shape)
    elif kind in ("int32", "int64"):
        values = draw(st.lists(st.integers(-2**31, 2**31 - 1), min_size=size, max_size=size))
        array = np.array(values, dtype=kind).reshape(shape)
    elif kind == "bool":
        array = np.array(draw(st.lists(st.booleans(), min_size=size, max_size=size)), bool).reshape(shape)
    else:
        values = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=size,
                               max_size=size))
        array = np.array(values, dtype=kind).reshape(shape)
    return array


def valid_retrieve(k: int = 3) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "toy"
    request.model_spec.signature_name = wire.RETRIEVE
    for key, value in {"user_id": np.array([b"u0"], dtype=object), "gender": np.array([b""], dtype=object),
                       "age": np.array([np.nan], np.float32), "history_item_ids": np.array([[b""]], dtype=object),
                       "k": np.array([k], np.int32)}.items():
        request.inputs[key].CopyFrom(to_proto(value))
    return request


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(signature=st.sampled_from(SIGNATURES), inputs=st.dictionaries(st.sampled_from(KEYS), tensors(), max_size=6),
       name=st.sampled_from(["toy", "toy", "other", ""]))
def test_random_requests_get_a_clear_status_and_the_server_keeps_serving(stub, signature, inputs, name) -> None:  # type: ignore[no-untyped-def]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(to_proto(value))
    try:
        stub.Predict(request, timeout=60)
    except grpc.RpcError as error:
        assert error.code() in CLEAR, (error.code(), error.details())
    assert stub.Predict(valid_retrieve(), timeout=60).outputs[wire.ITEM_IDS].string_val


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=st.one_of(st.integers(-2**31, 2**31 - 1), st.sampled_from([0, -1, 1, 30, 31, 2**31 - 1])),
       batch=st.integers(0, 5))
def test_any_k_and_batch_size_is_answered_or_refused_clearly(stub, k, batch) -> None:  # type: ignore[no-untyped-def]
    request = valid_retrieve()
    for key in ("user_id", "gender"):
        request.inputs[key].CopyFrom(to_proto(np.array([b"u1"] * batch, dtype=object)))
    request.inputs["age"].CopyFrom(to_proto(np.full(batch, 30.0, np.float32)))
    request.inputs["history_item_ids"].CopyFrom(to_proto(np.full((batch, 1), b"", dtype=object)))
    request.inputs["k"].CopyFrom(to_proto(np.full(batch, k, np.int32)))
    try:
        response = stub.Predict(request, timeout=60)
        assert batch == 0 or 1 <= k <= 30  # the toy catalog caps max_k at 30
        assert response.outputs[wire.ITEM_IDS].tensor_shape.dim[0].size == batch
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "input k must be" in error.details()
        assert not 1 <= k <= 30


def test_a_request_over_the_size_bound_is_refused(stub) -> None:  # type: ignore[no-untyped-def]
    request = valid_retrieve()
    request.inputs["user_id"].CopyFrom(to_proto(np.array([b"u" * (5 << 20)], dtype=object)))  # > the 4 MiB bound
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(request, timeout=60)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.Predict(valid_retrieve(), timeout=60).outputs[wire.SCORES].float_val


USER_KEYS = {"user_id": "string", "gender": "string", "age": "float32", "history_item_ids": "string"}
SIGNATURE_KEYS = {
    wire.RETRIEVE: {**USER_KEYS, "k": "int32"},
    wire.RETRIEVE_EXCLUDING: {**USER_KEYS, "k": "int32", "exclude_item_ids": "string", "exclude_history": "bool"},
    wire.RANK: {**USER_KEYS, "item_id": "string", "title": "string", "year": "string", "genres": "string"},
    wire.USER_EMBEDDING: USER_KEYS,
    wire.ITEM_EMBEDDING: {"item_id": "string", "title": "string", "year": "string", "genres": "string"},
}


@st.composite
def shaped(draw, dtype: str):  # type: ignore[no-untyped-def]
    shape = tuple(draw(st.lists(st.integers(0, 3), min_size=0, max_size=3)))
    size = int(np.prod(shape)) if shape else 1
    if dtype == "string":
        values = [draw(strings) for _ in range(size)]
        return np.array([v.encode("utf-8", "surrogatepass") if isinstance(v, str) else v for v in values],
                        dtype=object).reshape(shape)
    if dtype == "int32":
        return np.array(draw(st.lists(st.integers(-3, 40), min_size=size, max_size=size)), np.int32).reshape(shape)
    if dtype == "bool":
        return np.array(draw(st.lists(st.booleans(), min_size=size, max_size=size)), bool).reshape(shape)
    return np.array(draw(st.lists(st.floats(width=32), min_size=size, max_size=size)), np.float32).reshape(shape)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data(), signature=st.sampled_from(sorted(SIGNATURE_KEYS)))
def test_the_right_keys_with_random_shapes_and_values(stub, data, signature) -> None:  # type: ignore[no-untyped-def]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "toy"
    request.model_spec.signature_name = signature
    for key, dtype in SIGNATURE_KEYS[signature].items():
        request.inputs[key].CopyFrom(to_proto(data.draw(shaped(dtype)), None))
    try:
        stub.Predict(request, timeout=60)
    except grpc.RpcError as error:
        assert error.code() in CLEAR, (error.code(), error.details())
    assert stub.Predict(valid_retrieve(), timeout=60).outputs[wire.ITEM_IDS].string_val


def _hostile(key: str, dtype: int, dims: list[int], **values: object) -> predict_pb2.PredictRequest:
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

    request = valid_retrieve()
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])
    request.inputs[key].CopyFrom(tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, **values))  # type: ignore[arg-type]
    return request


@pytest.mark.parametrize("key, dtype, dims, values, message", [
    ("age", 1, [50_000_000], {"float_val": [1.0]}, "input 'age': shape [50000000] holds 50,000,000 elements"),
    ("k", 0, [1], {}, "input 'k': dtype DT_INVALID is not supported"),
    ("k", 21, [1], {}, "input 'k': dtype DT_VARIANT is not supported"),
    ("k", 999, [1], {}, "input 'k': dtype 999 is not supported"),
    ("user_id", 7, [-1], {"string_val": [b"u0"]}, "not negative"),
    ("x", 1, [50_000_000], {"float_val": [1.0]}, "Sent extra: {x}"),  # an unknown key is refused, never decoded
])
def test_hostile_tensors_are_invalid_arguments_naming_the_input(stub, key, dtype, dims, values, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(_hostile(key, dtype, dims, **values), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert message in caught.value.details()
    assert stub.Predict(valid_retrieve(), timeout=60).outputs[wire.SCORES].float_val


def test_the_default_message_bound_is_16_mib(exported) -> None:  # type: ignore[no-untyped-def]
    with LocalServer(exported.path.parent.parent, "toy", port=0, log=False) as server:
        with grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = valid_retrieve()
            request.inputs["user_id"].CopyFrom(to_proto(np.array([b"u" * (17 << 20)], dtype=object)))
            with pytest.raises(grpc.RpcError) as caught:
                stub.Predict(request, timeout=60)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            rows = 900  # under it, and inside the export's limits: 900 unknown users of 16,000-byte ids (~13.7 MiB)
            for key, value in {"user_id": np.array([b"u" * 16_000] * rows, dtype=object),
                               "gender": np.array([b""] * rows, dtype=object),
                               "age": np.full(rows, np.nan, np.float32),
                               "history_item_ids": np.full((rows, 1), b"", dtype=object),
                               "k": np.full(rows, 3, np.int32)}.items():
                request.inputs[key].CopyFrom(to_proto(value))
            assert request.ByteSize() > 13 << 20
            assert len(stub.Predict(request, timeout=120).outputs[wire.SCORES].float_val) == rows * 3


# --- what a hostile client sends: raw TensorProtos whose dtype, shape and values need not agree ---

DTYPES = st.one_of(st.integers(0, 30), st.sampled_from([100, 999, 2**31 - 1]))  # valid enums, _REF and beyond
DIMS = st.lists(st.one_of(st.integers(-2, 4), st.sampled_from([2**31, 2**40, 2**62])), max_size=7)
VALUE_FIELDS = st.sampled_from(["float_val", "int_val", "int64_val", "string_val", "bool_val", "double_val",
                                "tensor_content", None])
RSS_BOUND_MIB = 512  # peak growth of this process (the server runs in it) over the whole fuzz run


@st.composite
def raw_tensors(draw):  # type: ignore[no-untyped-def]
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

    dims = draw(DIMS)
    proto = tensor_pb2.TensorProto(dtype=draw(DTYPES))
    proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims],
        unknown_rank=draw(st.booleans()) and not dims))
    field, count = draw(VALUE_FIELDS), draw(st.integers(0, 5))
    if field == "tensor_content":
        proto.tensor_content = draw(st.binary(max_size=64))
    elif field == "string_val":
        proto.string_val.extend(draw(st.lists(st.binary(max_size=40), min_size=count, max_size=count)))
    elif field in ("float_val", "double_val"):
        getattr(proto, field).extend([1.5] * count)
    elif field == "bool_val":
        proto.bool_val.extend([True] * count)
    elif field is not None:
        getattr(proto, field).extend([7] * count)
    return proto


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


@pytest.fixture(scope="module")
def rss_at_start(stub) -> float:  # type: ignore[no-untyped-def]
    stub.Predict(valid_retrieve(), timeout=60)  # the model is loaded and warm before the baseline
    return _peak_rss_mib()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(signature=st.sampled_from([wire.RETRIEVE, wire.RETRIEVE_EXCLUDING, wire.RANK, wire.USER_EMBEDDING]),
       key=st.sampled_from([*KEYS, "", "a" * 300]), tensor=raw_tensors(), drop=st.sampled_from(["", "k", "user_id"]))
def test_hostile_raw_tensors_get_a_status_and_memory_stays_bounded(stub, rss_at_start, signature, key, tensor,
                                                                   drop) -> None:  # type: ignore[no-untyped-def]
    request = valid_retrieve()
    request.model_spec.signature_name = signature
    request.inputs[key].CopyFrom(tensor)
    if drop and drop != key:
        del request.inputs[drop]
    try:
        stub.Predict(request, timeout=60)
    except grpc.RpcError as error:
        assert error.code() in CLEAR, (error.code(), error.details())
    assert _peak_rss_mib() - rss_at_start < RSS_BOUND_MIB
    assert stub.Predict(valid_retrieve(), timeout=60).outputs[wire.ITEM_IDS].string_val
