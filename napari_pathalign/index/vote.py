"""Majority vote over search hits: the label (or site) the nearest slides agree on, and how strongly."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict

from napari_pathalign.index.records import Hit


def majority_vote(hits: list[Hit], field: str = "label") -> tuple[object | None, float, dict]:
    """(winner or None, agreement = votes for it / len(hits), counts) over the hits' ``field``.

    Hits without a value abstain but still count in the agreement's denominator, so one labelled
    neighbour out of ten gives 0.1, not 1.0. Ties go to the value with the larger summed score.
    """
    names = {f.name for f in dataclasses.fields(Hit)}
    if field not in names:
        raise ValueError(f"field {field!r} is not a Hit field; expected one of {sorted(names)}")
    counts: Counter = Counter()
    score_sum: dict = defaultdict(float)
    for hit in hits:
        value = getattr(hit, field)
        if value is not None:
            counts[value] += 1
            score_sum[value] += hit.score
    if not counts:
        return None, 0.0, {}
    winner = max(counts, key=lambda v: (counts[v], score_sum[v]))
    return winner, counts[winner] / len(hits), dict(counts)
