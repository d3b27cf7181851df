"""Percentile bootstrap over slides: how far a metric measured on a few dozen test slides can move."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def bootstrap_ci(
    statistic: Callable[..., float | None],
    columns: dict[str, np.ndarray],
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Interval holding ``level`` of ``statistic(**columns)`` over slides resampled with replacement.

    ``columns`` are per-slide arrays of equal length (row i = slide i). Resamples where the
    statistic is undefined (it returns None, e.g. an AUC with one class) are skipped; None when
    fewer than half of them were defined.
    """
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"per-slide columns must have one length, got {sorted(lengths)}")
    n = lengths.pop()
    if n == 0:
        raise ValueError("no slides to resample")
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        rows = rng.integers(0, n, n)
        s = statistic(**{k: np.asarray(v)[rows] for k, v in columns.items()})
        if s is not None:
            stats.append(s)
    if len(stats) < n_boot / 2:
        return None
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(lo), float(hi)
