"""The client without a real model: what ``recommend_excluding`` sends for each form of ``exclude``, and how it follows
a hot swap that changes a signature (a fake server)."""

from __future__ import annotations

from concurrent import futures

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from tfmtl.serving import signatures as wire
from tfmtl.serving.client import Client
from tfmtl.serving.errors import InvalidArgumentError
from tfmtl.serving.tensors import to_proto


@pytest.fixture
def sent(monkeypatch):  # type: ignore[no-untyped-def]
    """A client whose requests are captured instead of sent: returns (client, list of exclusion arrays)."""
    client = Client("127.0.0.1:1", "toy", retries=0)  # never dialled: the channel connects lazily
    captured: list[np.ndarray] = []

    def capture(signature, users, k, extra, single):  # type: ignore[no-untyped-def]
        assert signature == wire.RETRIEVE_EXCLUDING
        captured.append(extra[wire.EXCLUDE_ITEM_IDS])
        return users

    monkeypatch.setattr(client, "_recommend", capture)
    yield client, captured
    client.close()


def test_a_bare_string_is_refused_not_read_as_characters(sent) -> None:  # type: ignore[no-untyped-def]
    client, captured = sent
    with pytest.raises(ValueError, match="bare string '181'"):
        client.recommend_excluding("42", exclude="181")
    assert captured == []


def test_one_flat_list_is_every_users_exclusion(sent) -> None:  # type: ignore[no-untyped-def]
    client, captured = sent
    client.recommend_excluding(["1", "2", "3"], exclude=["181", "50"])
    np.testing.assert_array_equal(captured[0], np.array([["181", "50"]] * 3, dtype=object))
    client.recommend_excluding("42", exclude=["181"])
    np.testing.assert_array_equal(captured[1], np.array([["181"]], dtype=object))


def test_one_list_per_user_is_padded_with_empty_strings(sent) -> None:  # type: ignore[no-untyped-def]
    client, captured = sent
    client.recommend_excluding(["1", "2"], exclude=[["181", "50", "9"], ["7"]])
    np.testing.assert_array_equal(captured[0], np.array([["181", "50", "9"], ["7", "", ""]], dtype=object))


@pytest.mark.parametrize("users, exclude, message", [
    (["1", "2"], [["181"]], "1 lists for 2 users"),
    (["1", "2"], [["181"], "50"], "not a mix"),
    ("42", [["181"]], "not a mix"),
])
def test_exclusions_that_do_not_fit_the_users_are_refused(sent, users, exclude, message) -> None:  # type: ignore[no-untyped-def]
    client, captured = sent
    with pytest.raises(ValueError, match=message):
        client.recommend_excluding(users, exclude=exclude)
    assert captured == []


# --- a hot swap that changes a signature: a fake server whose retrieve gains an input in version 2 ---

class SwappingServer:
    """``retrieve`` takes user_id and k in version 1, and also history_item_ids in version 2 (set ``version``)."""

    def __init__(self) -> None:
        self.version = 1
        self.predicts: list[set[str]] = []
        outer = self

        class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
            def GetModelMetadata(self, request, context):  # type: ignore[no-untyped-def]
                return outer.metadata()

            def Predict(self, request, context):  # type: ignore[no-untyped-def]
                return outer.predict(request, context)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), self.server)
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def inputs(self) -> dict[str, str]:
        keys = {"user_id": "string", "k": "int32"}
        return {**keys, "history_item_ids": "string"} if self.version == 2 else keys

    def metadata(self):  # type: ignore[no-untyped-def]
        def info(dtype: str, rank: int) -> meta_graph_pb2.TensorInfo:
            shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=-1)] * rank)
            return meta_graph_pb2.TensorInfo(dtype=tf.as_dtype(dtype).as_datatype_enum, tensor_shape=shape)

        inputs = {key: info(dtype, 2 if key == "history_item_ids" else 1) for key, dtype in self.inputs().items()}
        outputs = {"item_ids": info("string", 2), "scores": info("float32", 2)}
        signatures = get_model_metadata_pb2.SignatureDefMap(
            signature_def={"retrieve": meta_graph_pb2.SignatureDef(inputs=inputs, outputs=outputs)})
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = "toy"
        response.model_spec.version.value = self.version
        response.metadata["signature_def"].Pack(signatures)
        return response

    def predict(self, request, context):  # type: ignore[no-untyped-def]
        self.predicts.append(set(request.inputs))
        if set(request.inputs) != set(self.inputs()):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"expected inputs {sorted(self.inputs())}")
        response = predict_pb2.PredictResponse()
        response.model_spec.name, response.model_spec.version.value = "toy", self.version
        response.outputs["item_ids"].CopyFrom(to_proto(np.array([[b"i1"]], dtype=object)))
        response.outputs["scores"].CopyFrom(to_proto(np.array([[0.5]], np.float32)))
        return response


def test_after_a_hot_swap_that_changes_a_signature_the_client_reads_the_new_one() -> None:
    server = SwappingServer()
    try:
        with Client(server.address, "toy", timeout=10, retries=0) as client:
            assert client.recommend("u0", k=1).item_ids == ["i1"] and client.metadata().version == 1
            server.version = 2  # the new version takes an input the cached signature lacks
            assert client.recommend("u0", k=1).version == 2  # refused once, then rebuilt from the new signature
            assert server.predicts[-2:] == [{"user_id", "k"}, {"user_id", "k", "history_item_ids"}]
            assert client.metadata().version == 2
    finally:
        server.server.stop(0)


def test_a_response_from_a_new_version_refreshes_the_signatures_before_the_next_call() -> None:
    server = SwappingServer()
    try:
        with Client(server.address, "toy", timeout=10, retries=0) as client:
            client.metadata()
            server.version = 2
            with pytest.raises(InvalidArgumentError):  # the signature really changed: this request is refused
                client.predict("retrieve", {"user_id": np.array(["u0"], dtype=object), "k": np.array([1])},
                               cast=False)
            assert client.metadata().version == 2  # refreshed on the refusal
            server.version = 1  # a rollback: the answer comes from version 1, so the cache is stale again
            client.predict("retrieve", {"user_id": np.array(["u0"], dtype=object), "k": np.array([1], np.int32)})
            assert client.metadata().version == 1
    finally:
        server.server.stop(0)
