"""TensorProto <-> NumPy, the way TF Serving writes responses: typed value fields, never ``tensor_content``."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

_FIELDS = {types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val", types_pb2.DT_INT32: "int_val",
           types_pb2.DT_INT64: "int64_val", types_pb2.DT_BOOL: "bool_val", types_pb2.DT_STRING: "string_val",
           types_pb2.DT_INT16: "int_val", types_pb2.DT_INT8: "int_val", types_pb2.DT_UINT8: "int_val"}


def to_proto(value: np.ndarray, dtype: tf.DType | None = None) -> tensor_pb2.TensorProto:
    """An array as a TensorProto with typed fields (strings are UTF-8 encoded)."""
    dtype = dtype or tf.as_dtype(np.asarray(value).dtype if np.asarray(value).dtype != object else tf.string)
    array = np.asarray(value)
    proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum, tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(n)) for n in array.shape]))
    field = _FIELDS.get(dtype.as_datatype_enum)
    if field is None:
        return tf.make_tensor_proto(array, dtype=dtype)
    flat = array.reshape(-1)
    if dtype == tf.string:
        getattr(proto, field).extend(v if isinstance(v, bytes) else str(v).encode("utf-8") for v in flat)
    else:
        getattr(proto, field).extend(flat.astype(dtype.as_numpy_dtype).tolist())
    return proto


def to_array(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """A TensorProto (typed fields or tensor_content) as an array; strings stay bytes."""
    return tf.make_ndarray(proto)
