"""Client against a server that must behave like TF Serving: every signature, every status case, typed outputs.

Runs against the local server on the toy export, and against a real TF Serving when TFMTL_TF_SERVING_ADDRESS
(host:port) is set and that server serves the toy export as TFMTL_TF_SERVING_MODEL (default "toy"); see
``tests/serving/make_toy_export.py`` for the three commands.
"""

from __future__ import annotations

import json
import os

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfmtl.cli import main
from tfmtl.serving import signatures as wire
from tfmtl.serving.client import Client
from tfmtl.serving.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ServingError,
)
from tfmtl.serving.server import LocalServer
from tfmtl.serving.tensors import to_proto

REAL = os.environ.get("TFMTL_TF_SERVING_ADDRESS")


@pytest.fixture(scope="module")
def local_server(exported):  # type: ignore[no-untyped-def]
    with LocalServer(exported.path.parent.parent, "toy", port=0, log=False) as server:
        yield server


@pytest.fixture(params=["local", "tf_serving"], scope="module")
def target(request, local_server):  # type: ignore[no-untyped-def]
    """(address, model name) of the server under test."""
    if request.param == "tf_serving":
        if not REAL:
            pytest.skip("no real TF Serving: set TFMTL_TF_SERVING_ADDRESS=host:port (and TFMTL_TF_SERVING_MODEL) "
                        "to run these conformance tests against one")
        return REAL, os.environ.get("TFMTL_TF_SERVING_MODEL", "toy")
    return local_server.address, "toy"


@pytest.fixture
def client(target):  # type: ignore[no-untyped-def]
    address, name = target
    with Client(address, name, timeout=30, retries=0) as c:
        yield c


def user_inputs(client: Client, ids: list[str]) -> dict:  # type: ignore[type-arg]
    info = client.metadata().signatures[wire.USER_EMBEDDING]
    out: dict = {}
    for key, tensor in info.inputs.items():
        if key == wire.USER_ID:
            out[key] = np.array(ids, dtype=object)
        elif tensor.dtype == "string":
            out[key] = np.array([""] * len(ids), dtype=object) if len(tensor.shape) == 1 else \
                np.full((len(ids), 1), "", dtype=object)
        else:
            out[key] = np.full(len(ids), np.nan, np.float32)
    return out


# --- every signature ---

def test_recommend_returns_k_sorted_items_with_titles(client) -> None:  # type: ignore[no-untyped-def]
    result = client.recommend("u0", k=5)
    assert len(result) == 5 and len(set(result.item_ids)) == 5
    scores = [item.score for item in result]
    assert scores == sorted(scores, reverse=True)
    assert all(item.title for item in result) and result.version >= 1
    many = client.recommend(["u0", {"user_id": "stranger", "gender": "F"}], k=3)
    assert [len(r) for r in many] == [3, 3] and many[0].item_ids == result.item_ids[:3]


def test_recommend_excluding_never_returns_excluded_items(client) -> None:  # type: ignore[no-untyped-def]
    top = client.recommend("u1", k=6).item_ids
    result = client.recommend_excluding("u1", exclude=top[:3], k=3)
    assert result.item_ids == top[3:6]


def test_rank_scores_each_candidate_in_order(client) -> None:  # type: ignore[no-untyped-def]
    ranked = client.rank("u0", ["i0", "i1", {"item_id": "brand-new", "title": "space robot laser"}])
    assert [r.item_id for r in ranked] == ["i0", "i1", "brand-new"]
    for item in ranked:
        assert set(item.scores) == {"rating", "like_probability", "retrieval_score"}
        assert 0.0 <= item.scores["like_probability"] <= 1.0


def test_embeddings_have_the_manifest_dimension(client) -> None:  # type: ignore[no-untyped-def]
    users = client.embed_users(["u0", "nobody"])
    items = client.embed_items(["i0", {"item_id": "new", "title": "love in paris"}])
    assert users.shape == (2, 8) and items.shape == (2, 8) and users.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(users, axis=1), 1.0, rtol=1e-5)


def test_metadata_lists_every_signature_with_dtypes(client) -> None:  # type: ignore[no-untyped-def]
    metadata = client.metadata()
    assert {*wire.SIGNATURES, wire.DEFAULT} <= set(metadata.signatures)
    retrieve = metadata.signatures[wire.RETRIEVE]
    assert retrieve.inputs[wire.K].dtype == "int32" and retrieve.outputs[wire.SCORES].dtype == "float32"
    assert [s.state for s in client.status()][0] == "AVAILABLE"


def test_outputs_come_back_in_typed_fields(target, client) -> None:  # type: ignore[no-untyped-def]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = target[1]
    request.model_spec.signature_name = wire.RETRIEVE
    inputs = {**user_inputs(client, ["u0"]), wire.K: np.array([2], np.int32)}
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(to_proto(value))
    with grpc.insecure_channel(target[0]) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    assert len(response.outputs[wire.SCORES].float_val) == 2 and not response.outputs[wire.SCORES].tensor_content
    assert len(response.outputs[wire.ITEM_IDS].string_val) == 2
    assert response.model_spec.signature_name == wire.RETRIEVE and response.model_spec.version.value >= 1


def test_local_server_matches_the_savedmodel_called_in_process(local_server, loaded) -> None:  # type: ignore[no-untyped-def]
    import tensorflow as tf

    with Client(local_server.address, "toy", timeout=30) as client:
        inputs = {**user_inputs(client, ["u0", "u5", "ghost"]), wire.K: np.array([4, 4, 4], np.int32)}
        served = client.predict(wire.RETRIEVE, inputs)
    direct = loaded.signatures[wire.RETRIEVE](**{k: tf.constant(v) for k, v in inputs.items()})
    np.testing.assert_array_equal(served[wire.ITEM_IDS], direct[wire.ITEM_IDS].numpy())
    np.testing.assert_allclose(served[wire.SCORES], direct[wire.SCORES].numpy(), atol=1e-6)


# --- every status case, each followed by a request that must still work ---

def _expect(error_type: type, match: str, call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error_type, match=match):
        call()


def test_unknown_model_is_not_found(target) -> None:  # type: ignore[no-untyped-def]
    with Client(target[0], "no-such-model", timeout=30, retries=0) as client:
        _expect(NotFoundError, "Servable not found", client.metadata)
        _expect(NotFoundError, "no-such-model", client.status)


def test_unknown_version_is_not_found(target) -> None:  # type: ignore[no-untyped-def]
    with Client(target[0], target[1], timeout=30, retries=0, version=987654) as client:
        _expect(NotFoundError, "987654", client.metadata)


def test_unknown_version_label_is_invalid(target) -> None:  # type: ignore[no-untyped-def]
    with Client(target[0], target[1], timeout=30, retries=0, version_label="no-such-label") as client:
        _expect(InvalidArgumentError, "no-such-label", client.metadata)


def test_unknown_signature_is_a_failed_precondition(client) -> None:  # type: ignore[no-untyped-def]
    _expect(FailedPreconditionError, "not found", lambda: client.predict("no_such_signature", {}))
    assert len(client.recommend("u0", k=1)) == 1


def test_missing_and_extra_inputs_are_invalid(client) -> None:  # type: ignore[no-untyped-def]
    inputs = {**user_inputs(client, ["u0"]), wire.K: np.array([2], np.int32)}
    missing = {k: v for k, v in inputs.items() if k != wire.K}
    _expect(InvalidArgumentError, "k", lambda: client.predict(wire.RETRIEVE, missing))
    _expect(InvalidArgumentError, "rating", lambda: client.predict(wire.RETRIEVE, {**inputs, "rating": [5.0]}))
    _expect(InvalidArgumentError, "kk", lambda: client.predict(wire.RETRIEVE, {**missing, "kk": inputs[wire.K]}))
    assert len(client.recommend("u0", k=2)) == 2


def test_wrong_dtypes_are_invalid_and_the_client_casts_to_the_signature(client) -> None:  # type: ignore[no-untyped-def]
    inputs = {**user_inputs(client, ["u0"]), wire.K: [2]}  # a Python int list: int64 in NumPy
    _expect(InvalidArgumentError, "int32", lambda: client.predict(wire.RETRIEVE, inputs, cast=False))
    floats = {**inputs, wire.K: np.array([2], np.int32), "age": np.array([30.0])}  # float64
    _expect(InvalidArgumentError, "float", lambda: client.predict(wire.RETRIEVE, floats, cast=False))
    assert client.predict(wire.RETRIEVE, inputs)[wire.ITEM_IDS].shape == (1, 2)  # cast to int32


def test_bad_output_filter_and_bad_k_are_invalid(client) -> None:  # type: ignore[no-untyped-def]
    inputs = {**user_inputs(client, ["u0"]), wire.K: np.array([2], np.int32)}
    _expect(InvalidArgumentError, "no_such_output", lambda: client.predict(wire.RETRIEVE, inputs,
                                                                           output_filter=["no_such_output"]))
    filtered = client.predict(wire.RETRIEVE, inputs, output_filter=[wire.SCORES])
    assert set(filtered) == {wire.SCORES}
    _expect(InvalidArgumentError, "input k must be", lambda: client.predict(
        wire.RETRIEVE, {**inputs, wire.K: np.array([0], np.int32)}))


def test_empty_model_name_and_bad_metadata_field_are_invalid(target) -> None:  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(target[0]) as channel:
        predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            predictions.Predict(predict_pb2.PredictRequest(), timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["graph"])
        request.model_spec.name = target[1]
        with pytest.raises(grpc.RpcError) as caught:
            predictions.GetModelMetadata(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = target[1]
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status, timeout=30)
        assert response.model_version_status[0].state == 30  # AVAILABLE


def test_errors_carry_the_servers_message(target) -> None:  # type: ignore[no-untyped-def]
    with Client(target[0], "nope", timeout=30, retries=0) as client:
        with pytest.raises(ServingError) as caught:
            client.metadata()
    assert caught.value.code == grpc.StatusCode.NOT_FOUND and "nope" in caught.value.details


def test_unknown_features_are_refused_before_sending(client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="unknown feature 'agee'"):
        client.recommend({"user_id": "u0", "agee": 30}, k=3)


def test_cli_query_prints_json(local_server, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(["query", "--address", local_server.address, "--name", "toy", "--user-id", "u0", "-k", "4",
                 "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and len(out["items"]) == 4 and out["items"][0]["title"]


# --- request-time history ---

def test_a_history_sent_through_the_client_is_what_the_model_reads(client, loaded) -> None:  # type: ignore[no-untyped-def]
    history = ["i1", "i3", "i5", "i7", "i9", "i11", "i13"]  # two more than the toy export's H = 5
    result = client.recommend("stranger", k=5, history=history)
    direct = loaded.signatures[wire.RETRIEVE](
        user_id=tf.constant(["stranger"]), gender=tf.constant([""]), age=tf.constant([np.nan]),
        history_item_ids=tf.constant([history]), k=tf.constant([5]))
    assert result.item_ids == [i.decode() for i in direct[wire.ITEM_IDS].numpy()[0]]
    assert result.history_dropped == 2 and client.recommend("stranger", k=5).history_dropped == 0
    excluded = client.recommend_excluding("stranger", k=5, history=history[-3:], exclude_history=True)
    assert not set(excluded.item_ids) & set(history[-3:])

    embedded = client.embed_users(["stranger", "stranger"], histories=[history[-5:], []])
    np.testing.assert_allclose(embedded[0], direct_embedding(loaded, history[-5:]), atol=1e-5)
    assert not np.allclose(embedded[0], embedded[1], atol=1e-4)
    with_history = client.rank("stranger", ["i0", "i1"], history=history)
    without = client.rank("stranger", ["i0", "i1"])
    assert with_history[0].scores["retrieval_score"] != pytest.approx(without[0].scores["retrieval_score"])


def direct_embedding(loaded, history: list[str]) -> np.ndarray:  # type: ignore[no-untyped-def]
    out = loaded.signatures[wire.USER_EMBEDDING](user_id=tf.constant(["stranger"]), gender=tf.constant([""]),
                                                 age=tf.constant([np.nan]), history_item_ids=tf.constant([history]))
    return out[wire.USER_EMBEDDING_OUTPUT].numpy()[0]


@pytest.mark.parametrize(("call", "message"), [
    (lambda c: c.recommend("u0", history="i1"), "not the bare string 'i1'"),
    (lambda c: c.recommend(["u0", "u1"], history=["i1", "i2"]), "one list of item ids per user"),
    (lambda c: c.recommend(["u0", "u1"], history=[["i1"]]), "1 lists for 2 users"),
    (lambda c: c.recommend("u0", history=[["i1"]]), "one flat list"),
])
def test_a_history_of_the_wrong_form_is_refused_before_sending(client, call, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        call(client)


def test_cli_query_sends_the_history(local_server, capsys) -> None:  # type: ignore[no-untyped-def]
    args = ["query", "--address", local_server.address, "--name", "toy", "--user-id", "new", "-k", "30"]
    main([*args, "--json"])
    everything = json.loads(capsys.readouterr().out)
    code = main([*args, "--history", "i0, i2,i4", "--exclude-history", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and len(everything["items"]) == 30 and len(out["items"]) == 27
    assert not {"i0", "i2", "i4"} & {item["item_id"] for item in out["items"]} and out["history_dropped"] == 0
