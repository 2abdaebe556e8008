"""Request-time user state: the history a request sends, the snapshot fallback, and exports that keep no users."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.exporting.test_export import call, reference_user_features, user_request
from tfmtl.data.history import HISTORY, user_histories


def padded(rows: list[list[str]], width: int) -> np.ndarray:
    """Histories by hand, newest last, padded on the left as training reads them."""
    return np.array([[""] * (width - len(r)) + r for r in rows], dtype=object)


def test_a_sent_history_gives_the_user_tower_on_that_history(loaded, toy_run) -> None:  # type: ignore[no-untyped-def]
    sent = [["i0", "i2", "i4"], ["i1", "i3", "i5", "i7", "i9", "i11", "i13"], ["i2", "no-such-item"], ["i6"]]
    request = user_request(["u0", "u1", "stranger", ""], history=sent)
    got = call(loaded, "user_embedding", **request)

    features = reference_user_features(toy_run, request)
    # H = 5: the newest five of the seven; an unknown item id is the unknown bucket, as in training.
    features[HISTORY] = padded([["i0", "i2", "i4"], ["i5", "i7", "i9", "i11", "i13"], ["i2", "no-such-item"],
                                ["i6"]], 5)
    want = toy_run.model.embed_user({k: tf.constant(v) for k, v in features.items()}).numpy()
    np.testing.assert_allclose(got["user_embedding"], want, atol=1e-5)
    assert got["history_dropped"].tolist() == [0, 2, 0, 0]

    # Padding may come on either side: right-padded rows read the same as left-padded ones.
    left = dict(request, history_item_ids=padded(sent, 7))
    np.testing.assert_allclose(call(loaded, "user_embedding", **left)["user_embedding"], got["user_embedding"],
                               atol=1e-6)


def test_a_row_without_history_falls_back_to_the_known_users_snapshot(loaded, toy_run) -> None:  # type: ignore[no-untyped-def]
    newest = user_histories(toy_run.data, toy_run.split.known, length=5)["u3"]
    by_id = call(loaded, "user_embedding", **user_request(["u3"]))["user_embedding"]
    sent = call(loaded, "user_embedding", **user_request(["u3"], history=[newest]))["user_embedding"]
    np.testing.assert_allclose(by_id, sent, atol=1e-6)
    other = call(loaded, "user_embedding", **user_request(["u3"], history=[["i1"]]))["user_embedding"]
    assert not np.allclose(by_id, other, atol=1e-4)  # a sent history replaces the snapshot's


def test_one_more_interaction_changes_the_list_and_history_exclusion_removes_it(loaded) -> None:  # type: ignore[no-untyped-def]
    def recommend(history: list[str], exclude_history: bool) -> tuple[list[bytes], np.ndarray]:
        out = call(loaded, "retrieve_excluding", **user_request(["stranger"], history=[history]),
                   k=np.array([10], np.int32), exclude_item_ids=np.array([[""]], dtype=object),
                   exclude_history=np.array([exclude_history]))
        return list(out["item_ids"][0]), out["scores"][0]

    history = ["i0", "i2", "i4"]
    before, before_scores = recommend(history, exclude_history=True)
    assert not {b"i0", b"i2", b"i4"} & set(before)
    newest = before[0].decode()
    after, after_scores = recommend([*history, newest], exclude_history=True)
    assert newest.encode() not in after and not {b"i0", b"i2", b"i4"} & set(after)
    kept, kept_scores = recommend([*history, newest], exclude_history=False)
    assert newest.encode() in kept and {b"i0", b"i2", b"i4"} & set(kept)
    assert not np.allclose(kept_scores, recommend(history, exclude_history=False)[1], atol=1e-5)


def test_history_exclusion_also_covers_a_known_users_snapshot(loaded, toy_run) -> None:  # type: ignore[no-untyped-def]
    newest = user_histories(toy_run.data, toy_run.split.known, length=5)["u5"]
    out = call(loaded, "retrieve_excluding", **user_request(["u5"]), k=np.array([30], np.int32),
               exclude_item_ids=np.array([[""]], dtype=object), exclude_history=np.array([True]))
    returned = {i.decode() for i in out["item_ids"][0] if i}
    assert not returned & set(newest) and len(returned) == 30 - len(set(newest))


@pytest.fixture(scope="module")
def without_users(toy_run):  # type: ignore[no-untyped-def]
    """The toy run's serving module with no user snapshot (what `--user-snapshot none` saves), in this process."""
    from tfmtl.inference import LocalRecommender

    return LocalRecommender(toy_run, user_snapshot="none")


def test_without_a_snapshot_a_known_user_is_known_only_by_what_it_sends(without_users, toy_run) -> None:  # type: ignore[no-untyped-def]
    module, functions = without_users.module, without_users._functions
    assert module.users.size == 0 and module.history_fallback == "none"
    sent = [[], ["i0", "i2"], []]
    request = user_request(["u3", "u3", "u4"], history=sent, gender=["", "", "F"], age=[np.nan, np.nan, 41.0])
    got = {k: v.numpy() for k, v in functions["user_embedding"](
        **{k: tf.constant(v) for k, v in request.items()}).items()}
    features = reference_user_features(toy_run, request, snapshot=False)
    features[HISTORY] = padded([[], ["i0", "i2"], []], 5)  # no history sent: none at all (no snapshot)
    want = toy_run.model.embed_user({k: tf.constant(v) for k, v in features.items()}).numpy()
    np.testing.assert_allclose(got["user_embedding"], want, atol=1e-5)
    assert not np.allclose(got["user_embedding"][0], got["user_embedding"][1], atol=1e-4)


def test_a_bad_user_snapshot_value_is_refused_by_name(toy_run) -> None:  # type: ignore[no-untyped-def]
    from tfmtl.config import ExportConfig
    from tfmtl.exporting import prepare

    with pytest.raises(ValueError, match="user_snapshot must be one of all, none, got 'some'"):
        prepare(toy_run, user_snapshot="some")
    with pytest.raises(ValueError, match="export.user_snapshot"):
        ExportConfig(user_snapshot="latest")


def test_scoring_test_rows_through_the_served_signature_gives_the_offline_metrics(without_users, toy_run) -> None:  # type: ignore[no-untyped-def]
    from tfmtl.evaluate import evaluate_model
    from tfmtl.served_metrics import served_retrieval_metrics
    from tfmtl.serving import signatures as wire

    function = without_users._functions[wire.RETRIEVE_EXCLUDING]
    inputs = wire.signature_inputs(toy_run.model.space)[wire.RETRIEVE_EXCLUDING]
    served = served_retrieval_metrics(
        lambda request: {k: v.numpy() for k, v in function(**{k: tf.constant(v) for k, v in request.items()}).items()},
        toy_run.data, toy_run.split.known, toy_run.split.test, inputs=inputs, history_length=5, ks=(1, 5, 10),
        batch_size=16)
    offline = evaluate_model(toy_run.model, toy_run.data, toy_run.split.known, toy_run.split.test, ks=(1, 5, 10),
                             tasks=["retrieval"])
    assert set(served) == {f"retrieval/{m}_at_{k}" for m in ("recall", "ndcg") for k in (1, 5, 10)}
    for name, value in served.items():
        assert value == pytest.approx(offline[name], abs=1e-9), name
    assert 0 < served["retrieval/recall_at_10"] < 1


def test_the_local_recommender_takes_a_history(without_users, toy_run) -> None:  # type: ignore[no-untyped-def]
    model, space = toy_run.model, toy_run.model.space
    table = without_users.recommend({"user_id": "stranger", "gender": "F", "age": 30.0}, k=5, history=["i0", "i2"],
                                    exclude_history=True)
    user = {"user_id": tf.constant(["stranger"]), "gender": tf.constant(["F"]), "age": tf.constant([30.0]),
            HISTORY: tf.constant(padded([["i0", "i2"]], 5))}
    scores = (model.embed_user(user).numpy() @ model.embed_item({k: tf.constant(v) for k, v in
                                                                 space.catalog.items()}).numpy().T)[0]
    ids = np.asarray(space.catalog["item_id"]).astype(str)
    scores[np.isin(ids, ["i0", "i2"])] = -np.inf
    assert list(table["item_id"]) == list(ids[np.argsort(-scores, kind="stable")[:5]])
    with pytest.raises(ValueError, match="not the bare string"):
        without_users.recommend("u0", history="i0")


def test_requests_beyond_the_exports_limits_are_refused_by_name(loaded, exported) -> None:  # type: ignore[no-untyped-def]
    import json

    from tfmtl.config import RequestLimits
    from tfmtl.exporting import MANIFEST_FILE

    limits = json.loads((exported.path / "assets.extra" / MANIFEST_FILE).read_text())["limits"]
    assert limits == RequestLimits().get_config()
    k = np.array([3], np.int32)
    cases = [
        ("retrieve", dict(**user_request(["u0"] * (limits["max_batch"] + 1)),
                          k=np.full(limits["max_batch"] + 1, 3, np.int32)),
         "input user_id: rows over the limit of 1024 .*limits.max_batch"),
        ("retrieve_excluding", dict(**user_request(["u0"]), k=k, exclude_history=np.array([False]),
                                    exclude_item_ids=np.full((1, limits["max_exclusions"] + 1), "i1", dtype=object)),
         "input exclude_item_ids: exclusions per row over .*limits.max_exclusions"),
        ("retrieve", dict(**user_request(["u0"], history=[["i1"] * (limits["max_history"] + 1)]), k=k),
         "input history_item_ids: history items per row over"),
        ("retrieve", dict(**user_request(["u" * (limits["max_string_bytes"] + 1)]), k=k),
         "input user_id: bytes in a string over"),
    ]
    many = limits["max_candidates"] + 1
    candidates = {"item_id": np.full((1, many), "i1", dtype=object), "year": np.full((1, many), "", dtype=object),
                  "title": np.full((1, many), "", dtype=object), "genres": np.full((1, many, 1), "", dtype=object)}
    cases.append(("rank", dict(**user_request(["u0"]), **candidates), "input item_id: candidates per row over"))
    for signature, inputs, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            call(loaded, signature, **inputs)
    assert call(loaded, "retrieve", **user_request(["u0"] * limits["max_batch"]),
                k=np.full(limits["max_batch"], 3, np.int32))["item_ids"].shape == (limits["max_batch"], 3)
