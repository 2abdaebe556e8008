"""The user's behaviour sequence: their earlier items, in time order, from the training rows only.

A training row sees only the user's training items that came before it (by time, ties by row position), so
no row's own item or label leaks into its features. Any other row (validation, test) sees the user's training
items up to its own timestamp, what a served model sees at that moment; serving itself uses the whole
history. The newest ``length`` items are kept, newest last; the rest of the width is padded with "" on the left.
"""

from __future__ import annotations

import numpy as np

from tfmtl.data.interactions import ITEM_ID, TIMESTAMP, USER_ID, InteractionData

HISTORY = "history"
HISTORY_LABELS = "history_ratings"
NEXT_ITEMS = "next_item_ids"  # all-positions training: the item that followed each history position
NEXT_LABELS = "next_labels"  # ... and its label
HISTORY_MODES = ("before", "others")  # see history_features
PAD = ""


def history_features(data: InteractionData, train_rows: np.ndarray, rows: np.ndarray, *, length: int,
                     is_training: bool, until_row_time: bool = True, label: str | None = None,
                     mode: str = "before") -> dict[str, np.ndarray]:
    """Item-id histories ``history`` [N, length] for ``rows`` (positions into ``data.interactions``).

    Args:
        data: the interactions.
        train_rows: positions of the training rows: the only source of histories.
        rows: positions to build histories for.
        length: H, the newest items kept.
        is_training: ``rows`` are training rows: each sees only what preceded it.
        until_row_time: other rows see only the training items before their own timestamp (offline evaluation
            on a random split, matching what training rows see); False gives the whole history (serving).
        label: also return that label of each history item as ``history_ratings`` float32 [N, length] (0 = pad).
        mode: ``before`` (a sequence: what came earlier) or ``others`` (a bag: a training row sees the user's
            newest training items except itself, earlier or later; other rows see the whole history).
    """
    if length < 1:
        raise ValueError(f"history length must be >= 1, got {length}")
    if mode not in HISTORY_MODES:
        raise ValueError(f"history mode must be one of {', '.join(HISTORY_MODES)}, got {mode!r}")
    ordered, starts, ends = _user_timelines(data, train_rows)
    users = data.interactions[USER_ID].to_numpy()
    items = data.interactions[ITEM_ID].to_numpy()
    position_in_timeline = np.full(len(users), -1, dtype=np.int64)
    position_in_timeline[ordered] = np.arange(len(ordered))
    times = data.interactions[TIMESTAMP].to_numpy() if data.has_timestamps else None
    ordered_times = times[ordered] if times is not None else None
    out = np.full((len(rows), length), PAD, dtype=object)
    labels = data.interactions[label].to_numpy(np.float32) if label else None
    out_labels = np.zeros((len(rows), length), np.float32)
    for n, row in enumerate(np.asarray(rows, dtype=np.int64)):
        span = starts.get(users[row])
        if span is None:
            continue  # a user with no training rows has no history
        start, end = span, ends[users[row]]
        position = position_in_timeline[row]
        if is_training != (position >= 0):
            raise ValueError(f"history_features: row {row} is {'not ' if is_training else ''}a training row; "
                             f"pass is_training={not is_training}" + ("" if is_training else
                                                                       ", or its own item and label would leak"))
        if is_training and mode == "others":
            window = ordered[max(start, end - length - 1):end]
            kept = window[window != row][-length:]
        else:
            if is_training:
                end = position
            elif mode == "before" and until_row_time and ordered_times is not None and times is not None:
                # Ties with the row's own second count as earlier, as file order decides ties in training.
                end = start + int(np.searchsorted(ordered_times[start:end], times[row], side="right"))  # type: ignore[call-overload]
            kept = ordered[max(start, end - length):end]
        if len(kept):
            out[n, length - len(kept):] = items[kept]
            if labels is not None:
                out_labels[n, length - len(kept):] = labels[kept]
    return {HISTORY: out, HISTORY_LABELS: out_labels} if label else {HISTORY: out}


def next_item_sequences(data: InteractionData, train_rows: np.ndarray, *, length: int, windows: str = "all",
                        label: str | None = None) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """Training sequences of the all-positions objective: each position of ``history`` is followed by the item at
    the same position of ``next_item_ids``, so the prefix up to it predicts that item.

    Each user's training events in time order (ties by row position) are cut from the newest backwards into
    windows of ``length`` + 1 events overlapping by one (``windows="all"``: every event after the user's first is
    a target exactly once), or only the newest window (``"newest"``). Windows are right-aligned with "" padding.

    Returns (``history`` and ``next_item_ids`` [W, length] (and ``next_labels`` float32 [W, length] for a
    ``label``), the row of each window's newest event [W] (for the user's features), the number of users skipped
    for having a single training event).
    """
    if length < 1:
        raise ValueError(f"history length must be >= 1, got {length}")
    if windows not in ("all", "newest"):
        raise ValueError(f"windows must be 'all' or 'newest', got {windows!r}")
    ordered, starts, ends = _user_timelines(data, train_rows)
    spans = []
    for user, start in starts.items():
        end = ends[user]
        while end - start >= 2:
            spans.append((max(start, end - length - 1), end))
            end = end - length if windows == "all" else start
    items = data.interactions[ITEM_ID].to_numpy()
    labels = data.interactions[label].to_numpy(np.float32) if label else None
    history = np.full((len(spans), length), PAD, dtype=object)
    targets = np.full((len(spans), length), PAD, dtype=object)
    target_labels = np.zeros((len(spans), length), np.float32)
    for n, (first, stop) in enumerate(spans):
        window = ordered[first:stop]
        width = len(window) - 1
        history[n, length - width:] = items[window[:-1]]
        targets[n, length - width:] = items[window[1:]]
        if labels is not None:
            target_labels[n, length - width:] = labels[window[1:]]
    newest = np.array([ordered[stop - 1] for _, stop in spans], dtype=np.int64)
    out = {HISTORY: history, NEXT_ITEMS: targets}
    if label:
        out[NEXT_LABELS] = target_labels
    skipped = sum(1 for user, start in starts.items() if ends[user] - start < 2)
    return out, newest, skipped


def user_histories(data: InteractionData, train_rows: np.ndarray, *, length: int) -> dict[str, list[str]]:
    """Each training user's newest ``length`` items, oldest first: the history a served user gets."""
    ordered, starts, ends = _user_timelines(data, train_rows)
    items = data.interactions[ITEM_ID].to_numpy()
    return {user: [str(i) for i in items[ordered[max(start, ends[user] - length):ends[user]]]]
            for user, start in starts.items()}


def _user_timelines(data: InteractionData, train_rows: np.ndarray) -> tuple[np.ndarray, dict, dict]:
    """Training rows grouped by user, each user's in time order (ties by row position)."""
    train_rows = np.asarray(train_rows, dtype=np.int64)
    users = data.interactions[USER_ID].to_numpy()[train_rows]
    codes = np.unique(users, return_inverse=True)[1] if len(users) else np.zeros(0, np.int64)
    times = (data.interactions[TIMESTAMP].to_numpy()[train_rows] if data.has_timestamps
             else np.zeros(len(train_rows), dtype=np.int64))
    order = np.lexsort((train_rows, times, codes))
    ordered = train_rows[order]
    sorted_users = users[order]
    boundaries = np.r_[0, np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1, len(order)]
    starts = {sorted_users[b]: int(b) for b in boundaries[:-1]}
    ends = {sorted_users[b]: int(e) for b, e in zip(boundaries[:-1], boundaries[1:], strict=False)}
    return ordered, starts, ends
