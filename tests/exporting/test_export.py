"""The exported SavedModel: the contract, parity with the training model on both loaders, k, ties, exclusions."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfmtl.config import ExportConfig
from tfmtl.data.history import HISTORY, user_histories
from tfmtl.data.pipeline import feature_arrays, numeric_fill
from tfmtl.exporting import MANIFEST_FILE
from tfmtl.exporting.warmup import MAX_WARMUP_RECORDS, WARMUP_FILE, read_warmup
from tfmtl.serving import signatures as wire

S, F, INT = "string", "float32", "int32"
# The toy data: users have gender (categorical) and age (numeric); items have year, title and genres.
USER = {"user_id": (S, [-1]), "gender": (S, [-1]), "age": (F, [-1]), "history_item_ids": (S, [-1, -1])}
ITEM = {"item_id": (S, [-1]), "year": (S, [-1]), "title": (S, [-1]), "genres": (S, [-1, -1])}
CANDIDATES = {"item_id": (S, [-1, -1]), "year": (S, [-1, -1]), "title": (S, [-1, -1]), "genres": (S, [-1, -1, -1])}
DROPPED = {"history_dropped": (INT, [-1])}
RANKED = {"item_ids": (S, [-1, -1]), "scores": (F, [-1, -1]), "item_titles": (S, [-1, -1]), **DROPPED}
EXPECTED = {
    "retrieve": ({**USER, "k": (INT, [-1])}, RANKED),
    "serving_default": ({**USER, "k": (INT, [-1])}, RANKED),
    "retrieve_excluding": ({**USER, "k": (INT, [-1]), "exclude_item_ids": (S, [-1, -1]),
                            "exclude_history": ("bool", [-1])}, RANKED),
    "rank": ({**USER, **CANDIDATES}, {"rating": (F, [-1, -1]), "like_probability": (F, [-1, -1]),
                                      "retrieval_score": (F, [-1, -1]), **DROPPED}),
    "user_embedding": (USER, {"user_embedding": (F, [-1, 8]), **DROPPED}),
    "item_embedding": (ITEM, {"item_embedding": (F, [-1, 8])}),
}


def signature_defs(path) -> dict:  # type: ignore[no-untyped-def]
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    out = {}
    for name, definition in proto.meta_graphs[0].signature_def.items():
        if name.startswith("__"):
            continue
        out[name] = tuple({key: (tf.as_dtype(info.dtype).name, [d.size for d in info.tensor_shape.dim])
                           for key, info in getattr(definition, side).items()} for side in ("inputs", "outputs"))
    return out


def test_signatures_have_exactly_the_contracts_names_keys_dtypes_and_shapes(exported) -> None:  # type: ignore[no-untyped-def]
    assert signature_defs(exported.path) == EXPECTED
    assert set(EXPECTED) == {*wire.SIGNATURES, wire.DEFAULT}


# --- an independent reference: the training model's own methods on hand-filled features ---

def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def reference_user_features(run, inputs: dict, *, snapshot: bool = True) -> dict:  # type: ignore[no-untyped-def]
    """Request user features with missing values filled the documented way (from the user table when
    ``snapshot``), and the history the row sent, else the known user's newest training items (when
    ``snapshot``)."""
    data, space = run.data, run.model.space
    table = feature_arrays(data.users, data, include_labels=False)
    row_of = {str(u): n for n, u in enumerate(data.users["user_id"])}
    histories = user_histories(data, run.split.known, length=space.history_length)
    ids = [_text(u) for u in inputs["user_id"]]
    out: dict = {"user_id": np.array(ids, dtype=object)}
    known = row_of if snapshot else {}
    for column in (*space.user_categorical, *space.user_text):
        out[column] = np.array([_text(v) or (table[column][known[u]] if u in known else "")
                                for u, v in zip(ids, inputs[column], strict=True)], dtype=object)
    for column in space.user_numeric:
        fill = numeric_fill(data.users, column)
        out[column] = np.array([v if not np.isnan(v) else (table[column][known[u]] if u in known else fill)
                                for u, v in zip(ids, inputs[column], strict=True)], np.float32)
    history = np.full((len(ids), space.history_length), "", dtype=object)
    for n, user in enumerate(ids):
        sent = [_text(i) for i in inputs["history_item_ids"][n] if _text(i)]
        items = sent[-space.history_length:] if sent else histories.get(user, []) if snapshot else []
        if items:
            history[n, -len(items):] = items
    out[HISTORY] = history
    return out


def reference_item_features(run, inputs: dict) -> dict:  # type: ignore[no-untyped-def]
    space = run.model.space
    catalog = {str(i): n for n, i in enumerate(space.catalog["item_id"])}
    ids = [_text(i) for i in inputs["item_id"]]
    out: dict = {"item_id": np.array(ids, dtype=object)}
    for column in (*space.item_categorical, *space.item_text):
        out[column] = np.array([_text(v) or (space.catalog[column][catalog[i]] if i in catalog else "")
                                for i, v in zip(ids, inputs[column], strict=True)], dtype=object)
    for column in space.item_multi_valued:
        width = space.catalog[column].shape[1]
        rows = []
        for i, values in zip(ids, inputs[column], strict=True):
            given = [_text(v) for v in values if _text(v)]
            rows.append(list(space.catalog[column][catalog[i]]) if not given and i in catalog else
                        (given + [""] * width)[:width])
        out[column] = np.array(rows, dtype=object)
    return out


def reference_outputs(run, signature: str, inputs: dict) -> dict:  # type: ignore[no-untyped-def]
    model, space = run.model, run.model.space
    if signature == "item_embedding":
        items = {k: tf.constant(v) for k, v in reference_item_features(run, inputs).items()}
        return {"item_embedding": model.embed_item(items).numpy()}
    const = {k: tf.constant(v) for k, v in reference_user_features(run, inputs).items()}
    users = model.embed_user(const).numpy()
    sent = np.array([sum(bool(_text(i)) for i in row) for row in inputs["history_item_ids"]], np.int32)
    dropped = {"history_dropped": np.maximum(sent - space.history_length, 0)}
    if signature == "user_embedding":
        return {"user_embedding": users, **dropped}
    if signature == "rank":
        batch, count = inputs["item_id"].shape
        flat = {k: v.reshape(batch * count, *v.shape[2:]) for k, v in inputs.items() if k in
                ("item_id", *space.item_categorical, *space.item_text, *space.item_multi_valued)}
        items = reference_item_features(run, flat)
        joined = {k: tf.constant(np.repeat(v, count, axis=0)) for k, v in
                  reference_user_features(run, inputs).items()}
        joined.update({k: tf.constant(v) for k, v in items.items()})
        ranked = {k: v.numpy() for k, v in model.rank(joined).items()}
        ranked["retrieval_score"] = np.sum(model.embed_user(joined).numpy() * model.embed_item(joined).numpy(), -1)
        return {**{k: v.reshape(batch, count) for k, v in ranked.items()}, **dropped}
    catalog = {k: tf.constant(v) for k, v in space.catalog.items()}
    scores = users @ model.embed_item(catalog).numpy().T
    if signature == "retrieve_excluding":
        position = {str(i): n for n, i in enumerate(space.catalog["item_id"])}
        read = reference_user_features(run, inputs)[HISTORY]
        for row, excluded in enumerate(inputs["exclude_item_ids"]):
            if inputs["exclude_history"][row]:
                excluded = [*excluded, *inputs["history_item_ids"][row], *read[row]]
            for item in excluded:
                if _text(item) in position:
                    scores[row, position[_text(item)]] = -np.inf
    k = int(inputs["k"].max())
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    ids = np.asarray(space.catalog["item_id"]).astype(str)[order]
    return {"item_ids": ids, "scores": np.take_along_axis(scores, order, 1),
            "item_titles": np.asarray(space.catalog["title"]).astype(str)[order], **dropped}


def assert_matches(got: dict, want: dict, where: str) -> None:
    assert set(got) == set(want), where
    for key, value in want.items():
        actual = np.asarray(got[key])
        if value.dtype.kind in "OUS":
            np.testing.assert_array_equal(actual.astype(str), value.astype(str), err_msg=f"{where} {key}")
        else:
            np.testing.assert_allclose(actual, value, atol=1e-5, err_msg=f"{where} {key}")


def test_both_loaders_match_the_training_model_on_every_signature(exported, loaded, toy_run) -> None:  # type: ignore[no-untyped-def]
    # The export's own verification ran both loaders in a fresh process on every warmup request against the serving
    # module; here the loaded module answers those requests as the training model does, so both loaders do.
    verification = exported.manifest["verification"]
    assert verification["loaders"] == ["tf.saved_model.load", "tf.compat.v1.saved_model.loader.load"]
    assert verification["max_abs_difference"] <= 1e-5
    requests = read_warmup(exported.path / "assets.extra" / WARMUP_FILE)
    assert {signature for signature, _ in requests} == set(wire.SIGNATURES)
    assert verification["requests"] == len(requests)
    for signature, inputs in requests:
        assert_matches(call(loaded, signature, **inputs), reference_outputs(toy_run, signature, inputs),
                       f"loaded {signature}")


def test_a_pooled_tower_with_history_text_and_a_user_bio_exports_and_serves_what_it_trained(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The pooled tower with history text (the shared toy run's tower is causal), and a user text column read by
    the same encoder. Both loaders (the TF1 session loader, as TF Serving loads, and TF2) against the training
    model, for a bio taken from the snapshot, a bio sent in the request and a new user's bio. (The shared export's
    test runs the fresh-process verification of every signature.)"""
    import dataclasses

    from tests.toy import toy_config, toy_data, with_user_bios, write_toy_schema
    from tfmtl.exporting import export
    from tfmtl.training import train

    schema = write_toy_schema(tmp_path, with_user_bios(toy_data()))
    config = toy_config(history_text=True)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, dataset=str(schema), epochs=1))
    run = train(config, output=tmp_path / "run", progress=False, evaluate_test=False)
    assert run.model.space.user_text == ("bio",)
    exported = export(run, name="toy", base=tmp_path / "saved_models", config=ExportConfig(verify=False))
    new_bio = "alien laser kiss paris"
    request = {**user_request(["u0", "u1", "never-seen"]), "bio": np.array(["", new_bio, new_bio], dtype=object)}
    want = reference_outputs(run, "user_embedding", request)
    assert_matches(call(tf.saved_model.load(str(exported.path)), "user_embedding", **request), want, "tf2")
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        signature = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(exported.path)).signature_def[
            "user_embedding"]
        got = session.run({k: v.name for k, v in signature.outputs.items()},
                          {signature.inputs[k].name: v for k, v in request.items()})
    assert_matches(got, want, "tf1 session loader")


def call(loaded, signature: str, **inputs):  # type: ignore[no-untyped-def]
    return {k: v.numpy() for k, v in loaded.signatures[signature](
        **{k: tf.constant(v) for k, v in inputs.items()}).items()}


def user_request(ids: list[str], history: list[list[str]] | None = None, **features: list) -> dict:  # type: ignore[type-arg]
    lists = history or [[]] * len(ids)
    width = max([1, *map(len, lists)])
    return {"user_id": np.array(ids, dtype=object),
            "gender": np.array(features.get("gender", [""] * len(ids)), dtype=object),
            "age": np.array(features.get("age", [np.nan] * len(ids)), np.float32),
            "history_item_ids": np.array([[*h, *[""] * (width - len(h))] for h in lists],
                                         dtype=object).reshape(len(ids), width)}


def test_k_is_per_row_and_bounded_by_the_manifest(exported, loaded) -> None:  # type: ignore[no-untyped-def]
    manifest = json.loads((exported.path / "assets.extra" / MANIFEST_FILE).read_text())
    assert manifest["max_k"] == 30  # min(1000, the 30-item catalog)
    out = call(loaded, "retrieve", **user_request(["u0", "u1"]), k=np.array([1, 3], np.int32))
    assert out["item_ids"].shape == (2, 3)
    assert (out["item_ids"][0, 1:] == b"").all() and (out["scores"][0, 1:] == 0).all()
    assert (out["item_ids"][1] != b"").all() and (np.diff(out["scores"][1]) <= 0).all()
    for bad in (0, -1, manifest["max_k"] + 1):
        with pytest.raises(tf.errors.InvalidArgumentError, match="input k must be"):
            call(loaded, "retrieve", **user_request(["u0"]), k=np.array([bad], np.int32))
    empty = call(loaded, "retrieve", **user_request([]), k=np.zeros(0, np.int32))
    assert empty["item_ids"].shape[0] == 0


def test_equal_scores_keep_catalog_order(exported, toy_run) -> None:  # type: ignore[no-untyped-def]
    from tfmtl.exporting.module import build_serving_module

    model = toy_run.model
    module = build_serving_module(model, user_ids=np.array(["u0"], dtype=object), user_columns={
        "gender": np.array(["M"], dtype=object), "age": np.array([30.0], np.float32),
        HISTORY: np.full((1, model.space.history_length), "", dtype=object)},
        user_defaults={}, item_defaults={}, max_k=5)
    scores = np.zeros((1, 30), np.float32)
    scores[0, [7, 3, 20]] = [2.0, 1.0, 1.0]  # 3 and 20 tie: 3 comes first in the catalog
    out = module._top_k(tf.constant(scores), tf.constant([5]))
    catalog = list(np.asarray(model.space.catalog["item_id"]).astype(str))
    assert [v.decode() for v in out["item_ids"].numpy()[0]] == [catalog[i] for i in (7, 3, 20, 0, 1)]


def test_exclusions_remove_items_and_keep_the_rest_in_order(loaded) -> None:  # type: ignore[no-untyped-def]
    users = user_request(["u2"])
    full = call(loaded, "retrieve", **users, k=np.array([8], np.int32))["item_ids"][0]
    excluded = np.array([[full[0], full[2], b"not-an-item", b""]], dtype=object)
    out = call(loaded, "retrieve_excluding", **users, k=np.array([6], np.int32), exclude_item_ids=excluded,
               exclude_history=np.array([False]))
    expected = [i for i in full if i not in (full[0], full[2])][:6]
    assert list(out["item_ids"][0]) == expected


def test_unknown_users_get_the_shared_bucket_and_their_side_features(loaded, toy_run) -> None:  # type: ignore[no-untyped-def]
    users = user_request(["nobody", "nobody-else", "nobody"], gender=["M", "M", "F"], age=[30.0, 30.0, 30.0])
    out = call(loaded, "user_embedding", **users)["user_embedding"]
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)  # both unknown ids share one bucket
    assert not np.allclose(out[0], out[2], atol=1e-4)  # side features still count
    oov = {"user_id": tf.constant(["", "", ""]), "gender": tf.constant(users["gender"].astype(str)),
           "age": tf.constant(users["age"]), HISTORY: tf.constant(np.full((3, 5), ""))}
    np.testing.assert_allclose(out, toy_run.model.embed_user(oov).numpy(), atol=1e-5)


def test_a_known_user_by_id_alone_equals_the_user_with_all_features_sent(loaded, toy_run) -> None:  # type: ignore[no-untyped-def]
    users = toy_run.data.users.set_index("user_id")
    by_id = call(loaded, "user_embedding", **user_request(["u3"]))["user_embedding"]
    explicit = call(loaded, "user_embedding", **user_request(["u3"], gender=[users.loc["u3", "gender"]],
                                                             age=[users.loc["u3", "age"]]))["user_embedding"]
    np.testing.assert_allclose(by_id, explicit, atol=1e-6)
    changed = call(loaded, "user_embedding", **user_request(["u3"], gender=["X"]))["user_embedding"]
    assert not np.allclose(by_id, changed, atol=1e-4)  # a sent value overrides the snapshot


def test_manifest_describes_the_export(exported) -> None:  # type: ignore[no-untyped-def]
    manifest = json.loads((exported.path / "assets.extra" / MANIFEST_FILE).read_text())
    assert manifest["version"] == exported.version and manifest["name"] == "toy"
    assert manifest["embedding_dim"] == 8 and manifest["catalog_size"] == 30 and manifest["known_users"] == 40
    assert manifest["signatures"]["retrieve"]["inputs"][-1] == {"name": "k", "dtype": "int32", "shape": [None]}
    assert manifest["encoder"]["preset"] == "tiny"
    assert {"tensorflow", "tf-keras", "keras-hub", "tensorflow-serving-api"} <= set(manifest["libraries"])
    assert all(manifest["libraries"][name] for name in ("tensorflow", "tensorflow-text"))
    assert manifest["minimum_tf_serving"] == "2.20"  # round-robin truncation uses TFText>RoundRobinTrim
    assert "rating/rmse" in manifest["training_metrics"]
    assert manifest["vocabulary_sizes"]["item_id"] > 0
    assert manifest["verification"]["requests"] == len(wire.SIGNATURES)


def test_warmup_file_parses_within_tf_servings_limit(exported) -> None:  # type: ignore[no-untyped-def]
    from tensorflow_serving.apis import prediction_log_pb2

    path = exported.path / "assets.extra" / WARMUP_FILE
    records = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    assert 0 < len(records) <= MAX_WARMUP_RECORDS
    for record in records:
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        assert request.model_spec.name == "toy" and request.model_spec.signature_name in wire.SIGNATURES
        assert "rating" not in request.inputs  # labels are never serving inputs


def test_saved_model_cli_lists_the_signatures(exported) -> None:  # type: ignore[no-untyped-def]
    code = ("import sys, tensorflow_text\n"
            "from tensorflow.python.tools import saved_model_cli\n"
            f"sys.argv = ['saved_model_cli', 'show', '--dir', {str(exported.path)!r}, '--all']\n"
            "saved_model_cli.main()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in (*wire.SIGNATURES, wire.DEFAULT):
        assert f"signature_def['{name}']" in done.stdout
