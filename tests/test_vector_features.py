"""Precomputed vector features ("bring your own embeddings"): schema, readers and their errors, the projection, and
the round trip train -> export -> both loaders (and the typed client's request builder)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfmtl.data import DataError, Schema, SkipReport, load_from_schema
from tfmtl.data.pipeline import feature_arrays
from tfmtl.data.schema import VectorSource
from tfmtl.data.tables import RowPolicy
from tfmtl.data.vectors import parse_vectors, read_vector_file
from tfmtl.serving import signatures as wire

ITEM_DIM, USER_DIM = 6, 3
NO_ITEM_VECTOR, NO_USER_VECTOR = "i5", "u3"  # kept, read as zeros, counted
MINIMAL = {"interactions": {"path": "r.csv", "user_id": "u", "item_id": "i"}}


# === The schema ===

def test_the_schema_declares_a_vector_by_its_dim_or_by_its_file(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        "interactions: {path: r.csv, user_id: u, item_id: i}\n"
        "items:\n  path: items.parquet\n  item_id: i\n  vector:\n    clip: 512\n"
        "    llm: {dim: 1024, path: llm.npz}\n    audio: {dim: 8, path: audio.npy, ids: audio_ids.txt}\n"
        "users: {path: users.csv, user_id: u, vector: {bio: {dim: 4}}}\n")
    schema = Schema.from_file(tmp_path / "s.yaml")
    assert schema.items is not None and schema.users is not None
    assert schema.items.features.vector == {"clip": 512, "llm": 1024, "audio": 8}
    assert schema.items.features.all == ("clip", "llm", "audio")
    assert schema.items.vector_sources == {"llm": VectorSource(tmp_path / "llm.npz"),
                                           "audio": VectorSource(tmp_path / "audio.npy", tmp_path / "audio_ids.txt")}
    assert schema.users.features.vector == {"bio": 4} and schema.users.vector_sources == {}
    assert schema.items.features.as_dict()["vector"] == {"clip": 512, "llm": 1024, "audio": 8}


@pytest.mark.parametrize("vector,words", [
    ({"clip": "512"}, "'items.vector.clip' must be a vector's dimension"),
    ({"clip": 0}, "'items.vector.clip' must be a vector's dimension, an integer from 1"),
    ({"clip": True}, "'items.vector.clip' must be a vector's dimension"),
    ({"clip": {"path": "c.npz"}}, "'items.vector.clip' is missing required key 'dim'"),
    ({"clip": {"dim": 4, "file": "c.npz"}}, "'items.vector.clip' has unknown key 'file'"),
    ({"clip": {"dim": 4, "path": "c.csv"}}, "must be a .npz"),
    ({"clip": {"dim": 4, "path": "c.npy"}}, "whose rows have no ids: add 'ids: FILE'"),
    ({"clip": {"dim": 4, "path": "c.npz", "ids": "i.txt"}}, "holds its own 'ids'"),
    ({"clip": {"dim": 4, "ids": "i.txt"}}, "needs a 'path:'"),
    ({"clip": {"dim": 4, "path": "../c.npz"}}, "outside the schema's folder"),
    (["clip"], "'items.vector' must be a mapping"),
    ({"title": 4}, "column 'title' is listed as 'vector' and already as 'text'"),
])
def test_a_bad_vector_declaration_names_the_field(vector: object, words: str) -> None:
    raw = {**MINIMAL, "items": {"path": "i.csv", "item_id": "i", "text": ["title"], "vector": vector}}
    with pytest.raises(DataError, match=words.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        Schema.from_dict(raw, source="s.yaml")


# === Reading and validating ===

def _parse(cells: list[object], dim: int = 3, policy: str = "error") -> tuple[pd.DataFrame, SkipReport]:
    rows = pd.RangeIndex(1, len(cells) + 1, name="row")  # 1-based, as read_table numbers them
    frame = pd.DataFrame({"id": [f"x{n}" for n in range(len(cells))], "v": pd.Series(cells, index=rows, dtype=object)},
                         index=rows)
    report = SkipReport()
    return parse_vectors(frame, "v", dim, file="items.parquet", policy=RowPolicy(policy, report)), report


@pytest.mark.parametrize("bad,value,words", [
    (np.array([1.0, 2.0], np.float32), "[1, 2] (2 values)", "vector has 2 numbers, the schema declares 3"),
    ([1.0, "x", 2.0], "x", "vector holds 'x' at position 1, which is not a number"),
    ("0.5 abc 1", "abc", "vector holds 'abc' at position 1, which is not a number"),
    ([1.0, float("nan"), 2.0], float("nan"), "vector holds nan at position 1; a vector must be finite numbers"),
    (np.array([1.0, 2.0, np.inf]), float("inf"), "vector holds inf at position 2"),
    (7.0, 7.0, "is the single value 7.0, not a vector of 3 numbers"),
])
def test_each_bad_vector_is_named_by_file_column_row_and_value(bad: object, value: object, words: str) -> None:
    with pytest.raises(DataError, match=words) as caught:
        _parse([[0.1, 0.2, 0.3], [1, 2, 3], bad, [1, 2]])
    error = caught.value
    assert (error.file, error.column, error.row) == ("items.parquet", "v", 3)
    assert str(error).startswith("items.parquet, column 'v', row 3: ")
    assert "1 more bad vector(s)" in str(error)  # the short vector of row 4
    if isinstance(value, float) and np.isnan(value):
        assert isinstance(error.value, float) and np.isnan(error.value)
    else:
        assert error.value == value


def test_missing_vectors_are_kept_as_zeros_and_counted_and_bad_ones_skipped_when_asked() -> None:
    frame, report = _parse([[1, 2, 3], None, "", [], "[4, 5, 6]", [1, 2], [np.nan] * 3], policy="skip")
    assert list(frame.index) == [1, 2, 3, 4, 5]  # the short vector and the NaN one are dropped
    assert report.as_dict() == {
        "items.parquet: vector length is not the declared 3 in column 'v'": {"rows_skipped": 1, "example_rows": [6]},
        "items.parquet: vector holds NaN or an infinite value in column 'v'": {"rows_skipped": 1,
                                                                               "example_rows": [7]}}
    assert report.missing_as_dict() == {"items.parquet: no vector in column 'v' (the model reads zeros)": {
        "rows": 3, "example_rows": [2, 3, 4]}}
    assert any(line.startswith("kept 3 row(s) with a missing value") for line in report.lines())
    with pytest.raises(DataError, match="no row has a vector"):
        _parse([None, None])


def _tables(folder: Path, vectors: dict[str, np.ndarray | None]) -> pd.DataFrame:
    """Interactions and an item table of the ids of ``vectors`` (in that order)."""
    ids = list(vectors)
    pd.DataFrame({"u": ["a"] * len(ids), "i": ids}).to_csv(folder / "r.csv", index=False)
    return pd.DataFrame({"i": ids, "year": ["1999"] * len(ids)})


def _load(folder: Path, items_file: str, vector: object, policy: str = "error") -> tuple[np.ndarray, dict]:
    schema = Schema.from_dict({**MINIMAL, "on_bad_rows": policy,
                               "items": {"path": items_file, "item_id": "i", "vector": {"clip": vector}}},
                              base_dir=folder, source=str(folder / "s.json"))
    data = load_from_schema(schema)
    return feature_arrays(data.items, data, include_labels=False)["clip"], data.info()


def test_a_parquet_list_column_a_csv_cell_an_npz_and_an_npy_give_the_same_arrays(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    vectors: dict[str, np.ndarray | None] = {f"i{n}": rng.normal(size=4).astype(np.float32) for n in range(5)}
    vectors["i2"] = None  # missing everywhere: zeros, counted
    items = _tables(tmp_path, vectors)
    cells = [None if v is None else v.tolist() for v in vectors.values()]
    pq.write_table(pa.table({"i": items["i"], "year": items["year"], "clip": pa.array(cells, pa.list_(pa.float32()))}),
                   tmp_path / "items.parquet")
    items.assign(clip=[" ".join(map(repr, c)) if c else "" for c in cells]).to_csv(tmp_path / "items.csv",
                                                                                  index=False)
    present = [k for k, v in vectors.items() if v is not None][::-1]  # the files list the ids in another order
    stacked = np.stack([vectors[k] for k in present])
    np.savez(tmp_path / "clip.npz", ids=np.array(present), vectors=stacked)
    np.save(tmp_path / "clip.npy", stacked)
    (tmp_path / "clip_ids.txt").write_text("\n".join(present) + "\n")
    # integer ids in a .npy ids file match a table whose ids are those numbers
    np.save(tmp_path / "clip_ids.npy", np.array([int(k[1:]) for k in present]))
    items.assign(i=items["i"].str[1:]).to_csv(tmp_path / "numbered.csv", index=False)
    pd.DataFrame({"u": ["a"] * 5, "i": [k[1:] for k in vectors]}).to_csv(tmp_path / "r2.csv", index=False)

    want = np.stack([np.zeros(4, np.float32) if v is None else v for v in vectors.values()])
    items.to_csv(tmp_path / "plain.csv", index=False)
    results = {
        "parquet": _load(tmp_path, "items.parquet", 4),
        "csv": _load(tmp_path, "items.csv", 4),
        "npz": _load(tmp_path, "plain.csv", {"dim": 4, "path": "clip.npz"}),
        "npy": _load(tmp_path, "plain.csv", {"dim": 4, "path": "clip.npy", "ids": "clip_ids.txt"}),
    }
    for where, (arrays, info) in results.items():
        np.testing.assert_allclose(arrays, want, rtol=0, atol=1e-7, err_msg=where)
        assert arrays.dtype == np.float32
        (key, count), = info["missing"].items()
        assert count == {"rows": 1, "example_rows": [3]} and "column 'clip'" in key, where
    numbered = Schema.from_dict({"interactions": {"path": "r2.csv", "user_id": "u", "item_id": "i"},
                                 "items": {"path": "numbered.csv", "item_id": "i",
                                           "vector": {"clip": {"dim": 4, "path": "clip.npy", "ids": "clip_ids.npy"}}}},
                                base_dir=tmp_path, source=str(tmp_path / "s.json"))
    data = load_from_schema(numbered)
    np.testing.assert_array_equal(feature_arrays(data.items, data, include_labels=False)["clip"], want)


def test_vector_files_are_checked_against_the_declaration_and_the_table(tmp_path: Path) -> None:
    vectors = {"i0": np.ones(3), "i1": np.ones(3)}
    _tables(tmp_path, vectors).to_csv(tmp_path / "items.csv", index=False)

    def load(policy: str = "error", **arrays: np.ndarray) -> dict:
        np.savez(tmp_path / "v.npz", **arrays)
        return _load(tmp_path, "items.csv", {"dim": 3, "path": "v.npz"}, policy)[1]

    ids = np.array(["i0", "i1"])
    with pytest.raises(DataError, match=r"v\.npz, column 'clip': vectors have dim 4 \(shape \(2, 4\)\), the schema "
                                        r"declares 3"):
        load(ids=ids, vectors=np.ones((2, 4)))
    with pytest.raises(DataError, match=r"v\.npz, column 'clip', row 2: vector of id 'i1' holds nan at "
                                        r"position 0"):
        load(ids=ids, vectors=np.array([[1.0, 2, 3], [np.nan, 0, 0]]))
    with pytest.raises(DataError, match="needs arrays 'ids'"):
        load(vectors=np.ones((2, 3)))
    with pytest.raises(DataError, match="holds Python objects"):
        load(ids=np.array(["i0", "i1"], dtype=object), vectors=np.ones((2, 3)))
    with pytest.raises(DataError, match=r"column 'ids', row 2: duplicate id 'i0'"):
        load(ids=np.array(["i0", "i0"]), vectors=np.ones((2, 3)))
    with pytest.raises(DataError, match="none of the 2 ids of .* is an id of this table"):
        load(ids=np.array(["0", "1"]), vectors=np.ones((2, 3)))
    with pytest.raises(DataError, match="ids have dtype float64"):
        load(ids=np.array([0.0, 1.0]), vectors=np.ones((2, 3)))
    with pytest.raises(DataError, match="vector holds 'x' at position 1"):
        load(ids=ids, vectors=np.array([["1", "x", "2"], ["1", "2", "3"]]))
    # an extra id and a bad row, under skip: counted, the table row without a vector read as zeros
    info = load("skip", ids=np.array(["i0", "i1", "gone"]), vectors=np.array([[1.0, 2, 3], [np.inf, 0, 0], [0, 0, 0]]))
    assert info["skipped"] == {f"{tmp_path / 'v.npz'}: vector holds NaN or an infinite value in column 'clip'": {
        "rows_skipped": 1, "example_rows": [2]}}
    assert info["missing"] == {
        f"{tmp_path / 'items.csv'}: no vector for this id in {tmp_path / 'v.npz'} (column 'clip'; the model reads "
        "zeros)": {"rows": 1, "example_rows": [2]},
        f"{tmp_path / 'v.npz'}: id matches no row of {tmp_path / 'items.csv'} (vector 'clip' unused)": {
            "rows": 1, "example_rows": [3]}}
    with pytest.raises(DataError, match="v.npy: file not found"):
        read_vector_file(VectorSource(tmp_path / "v.npy", tmp_path / "ids.txt"), "clip", 3,
                         policy=RowPolicy("error", SkipReport()))


# === The tower's layer ===

def test_the_projection_is_x_times_w_plus_b_of_the_raw_vector() -> None:
    from tfmtl.towers import VectorFeature

    layer = VectorFeature(5, 3, name="vector_clip")
    x = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
    got = layer(tf.constant(x)).numpy()
    kernel, bias = (v.numpy() for v in layer.projection.weights)
    assert kernel.shape == (5, 3) and bias.shape == (3,)
    bias = np.array([0.5, -1.0, 2.0], np.float32)
    layer.projection.bias.assign(bias)
    np.testing.assert_allclose(layer(tf.constant(x)).numpy(), x @ kernel + bias, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got, x @ kernel, rtol=1e-6, atol=1e-6)  # the bias starts at zero
    np.testing.assert_array_equal(layer.encode(tf.constant(x)).numpy(), x)  # raw: not normalised
    assert json.loads(json.dumps(layer.get_config()))["input_dim"] == 5
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        layer(tf.constant(np.zeros((1, 4), np.float32)))


# === Train, export, serve ===

def write_vector_schema(folder: Path) -> tuple[Path, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The toy data with a CLIP-like item vector (a Parquet list column) and a user vector (a .npz keyed by id); one
    item and one user have none."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.toy import toy_data, write_toy_schema

    data = toy_data()
    schema_path = write_toy_schema(folder, data)
    rng = np.random.default_rng(7)
    item_vectors = {str(i): rng.normal(size=ITEM_DIM).astype(np.float32) for i in data.items["item_id"]}
    user_vectors = {str(u): rng.normal(size=USER_DIM).astype(np.float32) for u in data.users["user_id"]}
    items = data.items.assign(genres=data.items["genres"].map("|".join))
    clip = [None if i == NO_ITEM_VECTOR else item_vectors[i].tolist() for i in items["item_id"]]
    pq.write_table(pa.Table.from_pandas(items, preserve_index=False).append_column(
        "clip", pa.array(clip, pa.list_(pa.float32()))), folder / "items.parquet")
    users = sorted(u for u in user_vectors if u != NO_USER_VECTOR)[::-1]
    np.savez(folder / "voice.npz", ids=np.array(users), vectors=np.stack([user_vectors[u] for u in users]))
    schema = json.loads(schema_path.read_text())
    schema["items"].update(path="items.parquet", vector={"clip": ITEM_DIM})
    schema["users"]["vector"] = {"voice": {"dim": USER_DIM, "path": "voice.npz"}}
    schema_path.write_text(json.dumps(schema))
    item_vectors[NO_ITEM_VECTOR] = np.zeros(ITEM_DIM, np.float32)
    user_vectors[NO_USER_VECTOR] = np.zeros(USER_DIM, np.float32)
    return schema_path, item_vectors, user_vectors


def test_a_model_with_item_and_user_vectors_exports_and_serves_what_it_trained(tmp_path: Path) -> None:
    """Both loaders (TF2, and the TF1 session loader as TF Serving loads) against the training model's embed_item /
    embed_user: a known entity sending nothing (the snapshot's vector), one sending a vector, a new one with its
    vector, a known one without a vector (zeros) and a new one sending none (zeros); ``rank`` with a new candidate's
    vector; a vector of another dim is refused."""
    from tests.exporting.test_export import call, reference_item_features
    from tests.toy import toy_config
    from tfmtl.config import ExportConfig
    from tfmtl.data.pipeline import numeric_fill
    from tfmtl.exporting import MANIFEST_FILE, export
    from tfmtl.features import FeatureSpace
    from tfmtl.training import train

    schema, item_vectors, user_vectors = write_vector_schema(tmp_path)
    # No text encoder and no history: the vectors are the content here, and the test stays fast.
    config = toy_config(history_length=0, text_features=())
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, dataset=str(schema), epochs=1,
                                                                   validation_fraction=0.0))
    run = train(config, output=tmp_path / "run", progress=False, evaluate_test=False)
    model, space, data = run.model, run.model.space, run.data
    assert (space.item_vector, space.user_vector) == ({"clip": ITEM_DIM}, {"voice": USER_DIM})
    assert data.info()["missing"] == {
        f"{tmp_path / 'items.parquet'}: no vector in column 'clip' (the model reads zeros)": {
            "rows": 1, "example_rows": [6]},
        f"{tmp_path / 'users.csv'}: no vector for this id in {tmp_path / 'voice.npz'} (column 'voice'; the model "
        "reads zeros)": {"rows": 1, "example_rows": [4]}}
    saved = FeatureSpace.load(run.path / "features.json")
    np.testing.assert_array_equal(saved.catalog["clip"], space.catalog["clip"])
    assert saved.catalog["clip"].dtype == np.float32 and saved.item_vector == {"clip": ITEM_DIM}
    exported = export(run, name="vectors", base=tmp_path / "saved_models", config=ExportConfig(verify=False))
    manifest = json.loads((exported.path / "assets.extra" / MANIFEST_FILE).read_text())
    assert manifest["vectors"]["items"] == {"clip": ITEM_DIM} and manifest["vectors"]["users"] == {"voice": USER_DIM}
    shapes = {f["name"]: f["shape"] for f in manifest["signatures"]["rank"]["inputs"]}
    assert shapes["clip"] == [None, None, ITEM_DIM] and shapes["voice"] == [None, USER_DIM]

    rng = np.random.default_rng(3)
    sent_item, new_item = rng.normal(size=(2, ITEM_DIM)).astype(np.float32)
    nan_item = np.full(ITEM_DIM, np.nan, np.float32)
    item_request = {"item_id": np.array(["i0", "i1", "brand-new", NO_ITEM_VECTOR, "new-without"], dtype=object),
                    "year": np.array(["", "", "1991", "", ""], dtype=object),
                    "genres": np.array([[""], [""], ["scifi"], [""], [""]], dtype=object),
                    "clip": np.stack([nan_item, sent_item, new_item, nan_item, nan_item])}
    items = reference_item_features(run, item_request)
    items["clip"] = np.stack([item_vectors["i0"], sent_item, new_item, np.zeros(ITEM_DIM), np.zeros(ITEM_DIM)])
    want_items = model.embed_item({k: tf.constant(v) for k, v in items.items()}).numpy()
    without = model.embed_item({k: tf.constant(v) for k, v in (items | {"clip": np.zeros_like(items["clip"])}).items()})
    for row in range(3):  # the vectors count
        assert not np.allclose(without.numpy()[row], want_items[row], atol=1e-4), row

    sent_user, new_user = rng.normal(size=(2, USER_DIM)).astype(np.float32)
    nan_user = np.full(USER_DIM, np.nan, np.float32)
    user_ids = ["u0", "u1", "never-seen", NO_USER_VECTOR, "never-either"]
    users_request = {"user_id": np.array(user_ids, dtype=object), "gender": np.full(5, "", dtype=object),
                     "age": np.full(5, np.nan, np.float32),
                     "voice": np.stack([nan_user, sent_user, new_user, nan_user, nan_user])}
    table = data.users.set_index("user_id")
    known = [u in table.index for u in user_ids]
    users = {"user_id": users_request["user_id"],  # missing values as the snapshot or the defaults fill them
             "gender": np.array([table.at[u, "gender"] if k else "" for u, k in zip(user_ids, known, strict=True)],
                                dtype=object),
             "age": np.array([table.at[u, "age"] if k else numeric_fill(data.users, "age")
                              for u, k in zip(user_ids, known, strict=True)], np.float32),
             "voice": np.stack([user_vectors["u0"], sent_user, new_user, np.zeros(USER_DIM), np.zeros(USER_DIM)])}
    want_users = model.embed_user({k: tf.constant(v) for k, v in users.items()}).numpy()

    loaded = tf.saved_model.load(str(exported.path))
    got = {"tf2": (call(loaded, "item_embedding", **item_request)["item_embedding"],
                   call(loaded, "user_embedding", **users_request)["user_embedding"])}
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        signatures = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(exported.path)).signature_def

        def run_signature(name: str, request: dict) -> dict:
            signature = signatures[name]
            return session.run({k: v.name for k, v in signature.outputs.items()},
                               {signature.inputs[k].name: v for k, v in request.items()})

        got["tf1"] = (run_signature("item_embedding", item_request)["item_embedding"],
                      run_signature("user_embedding", users_request)["user_embedding"])
        too_long = {k: v[:1] for k, v in item_request.items()} | {"clip": np.zeros((1, ITEM_DIM + 1), np.float32)}
        with pytest.raises(ValueError, match=r"Cannot feed value of shape \(1, 7\) for Tensor .*clip"):
            run_signature("item_embedding", too_long)
    for loader, (item_embeddings, user_embeddings) in got.items():
        np.testing.assert_allclose(item_embeddings, want_items, atol=1e-5, err_msg=f"{loader} item_embedding")
        np.testing.assert_allclose(user_embeddings, want_users, atol=1e-5, err_msg=f"{loader} user_embedding")
    # TF2's loaded signature takes any shape: the in-graph check answers (INVALID_ARGUMENT), as in TF Serving
    with pytest.raises(tf.errors.InvalidArgumentError, match="input clip: each row must hold exactly 6 numbers"):
        call(loaded, "item_embedding", **too_long)

    # rank: user u1 (its vector sent) and two candidates, a known item by id alone and a new item with its vector
    pick = [0, 2]
    rank_request = {k: v[1:2] for k, v in users_request.items()}
    rank_request.update({k: v[pick][np.newaxis] for k, v in item_request.items()})
    ranked = call(loaded, "rank", **rank_request)
    joined = {k: tf.constant(np.repeat(v[1:2], 2, axis=0)) for k, v in users.items()}
    joined.update({k: tf.constant(v[pick]) for k, v in items.items()})
    want = {k: v.numpy() for k, v in model.rank(joined).items()}
    want["retrieval_score"] = np.sum(model.embed_user(joined).numpy() * model.embed_item(joined).numpy(), axis=-1)
    assert set(ranked) == set(want)
    for key, value in want.items():
        np.testing.assert_allclose(ranked[key][0], value, atol=1e-5, err_msg=f"rank {key}")


def test_the_request_checks_refuse_another_dim_and_half_missing_rows() -> None:
    """What TF Serving answers INVALID_ARGUMENT with, when a request passes its (unchecked) placeholder shapes."""
    from tfmtl.exporting.module import _vector_checks

    _vector_checks(tf.constant(np.full((2, 3), np.nan, np.float32)), "clip", 3)  # all missing: fine
    _vector_checks(tf.zeros((2, 4, 3)), "clip", 3)  # rank candidates [B, C, dim]
    with pytest.raises(tf.errors.InvalidArgumentError, match="input clip: each row must hold exactly 3 numbers"):
        _vector_checks(tf.zeros((2, 4)), "clip", 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="input clip: each row must be 3 finite numbers, or all "
                                                              "NaN"):
        _vector_checks(tf.constant([[1.0, np.nan, 2.0]]), "clip", 3)


def test_the_client_sends_numpy_vectors_and_refuses_another_length_before_any_rpc() -> None:
    specs = {"item_id": ("string", (None,)), "clip": ("float32", (None, 3))}
    columns = wire.feature_columns(specs, [{"item_id": "a"}, {"item_id": "b", "clip": np.array([1, 2, 3])},
                                           {"item_id": "c", "clip": [0.5, 0.25, 0.0]}])
    assert columns["clip"].dtype == np.float32 and columns["clip"].shape == (3, 3)
    assert np.isnan(columns["clip"][0]).all()  # missing: a row of NaN
    np.testing.assert_array_equal(columns["clip"][1:], [[1, 2, 3], [0.5, 0.25, 0]])
    candidates = wire.feature_columns({"clip": ("float32", (None, None, 3))}, [{"clip": np.ones(3)}, {}], lead=2)
    assert candidates["clip"].shape == (2, 3)
    with pytest.raises(ValueError, match=r"row 1: feature 'clip' must be a vector of 3 numbers \(this model's dim\), "
                                         r"got shape \(4,\)"):
        wire.feature_columns(specs, [{"item_id": "a"}, {"item_id": "b", "clip": np.ones(4)}])
    with pytest.raises(ValueError, match="row 0: feature 'clip' holds NaN"):
        wire.feature_columns(specs, [{"item_id": "a", "clip": [1.0, np.nan, 0.0]}])
    with pytest.raises(ValueError, match="row 0: feature 'clip' must be a vector of numbers"):
        wire.feature_columns(specs, [{"item_id": "a", "clip": ["x", "y", "z"]}])
