"""TensorProto <-> NumPy, the way TF Serving writes responses: typed value fields, never ``tensor_content``."""

from __future__ import annotations

import math

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


# The most elements one request may decode into (16 MiB of float32): TF fills a shape larger than the values sent
# by repeating the last one, so a few bytes on the wire can ask for gigabytes.
MAX_REQUEST_ELEMENTS = 1 << 22


def to_array(proto: tensor_pb2.TensorProto, *, key: str = "", max_elements: int = MAX_REQUEST_ELEMENTS) -> np.ndarray:
    """A TensorProto (typed fields or tensor_content) as an array; strings stay bytes.

    Checked before anything is allocated: the dtype is one of the typed fields', every dimension is known and
    not negative, the shape holds at most ``max_elements`` and at least as many values as were sent. Fewer values
    than the shape are filled with the last one (zeros when none), as TF and TF Serving do. Raises ValueError
    naming ``key``.
    """
    where = f"input '{key}'" if key else "tensor"
    field = _FIELDS.get(proto.dtype)
    if field is None:
        name = types_pb2.DataType.Name(proto.dtype) if proto.dtype in types_pb2.DataType.values() else proto.dtype
        raise ValueError(f"{where}: dtype {name} is not supported (send one of "
                         f"{', '.join(sorted(types_pb2.DataType.Name(d) for d in _FIELDS))})")
    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or any(d < 0 for d in dims):
        raise ValueError(f"{where}: the shape must be fully known and not negative, got {dims or 'unknown rank'}")
    count = math.prod(dims)
    if count > max_elements:
        raise ValueError(f"{where}: shape {dims} holds {count:,} elements; a request may decode at most "
                         f"{max_elements:,}")
    if proto.tensor_content:
        itemsize = np.dtype(tf.as_dtype(proto.dtype).as_numpy_dtype).itemsize
        if proto.dtype == types_pb2.DT_STRING or len(proto.tensor_content) != count * itemsize:
            raise ValueError(f"{where}: tensor_content holds {len(proto.tensor_content)} bytes, shape {dims} "
                             f"needs {count * itemsize}")
    elif len(getattr(proto, field)) > count:
        raise ValueError(f"{where}: {len(getattr(proto, field))} values sent for shape {dims} ({count} elements)")
    return tf.make_ndarray(proto)
