"""Decoding request tensors: a hostile TensorProto is refused before anything is allocated."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from tfmtl.serving.tensors import MAX_REQUEST_ELEMENTS, to_array, to_proto


def proto(dtype: int, dims: list[int], **values: object) -> tensor_pb2.TensorProto:
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, **values)  # type: ignore[arg-type]


def test_a_17_byte_proto_asking_for_50_million_floats_is_refused_without_allocating() -> None:
    tiny = proto(types_pb2.DT_FLOAT, [50_000_000], float_val=[1.0])
    assert tiny.ByteSize() < 20
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"input 'age': shape \[50000000\] holds 50,000,000 elements"):
            to_array(tiny, key="age")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # nothing near the 200 MB the shape asks for


@pytest.mark.parametrize("dtype", [types_pb2.DT_INVALID, types_pb2.DT_VARIANT, types_pb2.DT_RESOURCE, 999])
def test_dtypes_without_a_typed_field_are_refused_by_name(dtype: int) -> None:
    with pytest.raises(ValueError, match="input 'k': dtype .* is not supported"):
        to_array(proto(dtype, [1]), key="k")


@pytest.mark.parametrize("dims, message", [([-1], "not negative"), ([2, -3], "not negative")])
def test_unknown_or_negative_dimensions_are_refused(dims: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_array(proto(types_pb2.DT_INT32, dims, int_val=[1]), key="k")


def test_more_values_than_the_shape_holds_are_refused() -> None:
    with pytest.raises(ValueError, match="3 values sent for shape \\[2\\]"):
        to_array(proto(types_pb2.DT_INT32, [2], int_val=[1, 2, 3]), key="k")


def test_tensor_content_must_fill_the_shape_exactly() -> None:
    with pytest.raises(ValueError, match="tensor_content holds 8 bytes, shape \\[3\\] needs 12"):
        to_array(proto(types_pb2.DT_FLOAT, [3], tensor_content=np.zeros(2, np.float32).tobytes()), key="x")


def test_the_budget_counts_elements_not_bytes() -> None:
    with pytest.raises(ValueError, match="at most 5"):
        to_array(proto(types_pb2.DT_STRING, [6], string_val=[b"a"] * 6), key="ids", max_elements=5)
    assert MAX_REQUEST_ELEMENTS >= 1 << 20  # a real request (batch x candidates) fits


def test_valid_tensors_decode_and_one_value_fills_the_shape_as_tf_serving_does() -> None:
    ids = np.array([[b"a", b"b"], [b"c", b""]], dtype=object)
    np.testing.assert_array_equal(to_array(to_proto(ids), key="ids"), ids)
    np.testing.assert_array_equal(to_array(proto(types_pb2.DT_INT32, [3], int_val=[7]), key="k"), [7, 7, 7])
    np.testing.assert_array_equal(to_array(proto(types_pb2.DT_FLOAT, [2]), key="age"), [0.0, 0.0])
