"""The client's request building, without a server: what ``recommend_excluding`` sends for each form of ``exclude``."""

from __future__ import annotations

import numpy as np
import pytest

from tfmtl.serving import signatures as wire
from tfmtl.serving.client import Client


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
