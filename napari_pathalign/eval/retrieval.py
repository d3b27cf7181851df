"""Retrieval metrics on a similarity matrix."""

from __future__ import annotations

import numpy as np


def top_k_accuracy(sim: np.ndarray, positives: np.ndarray, k: int = 1) -> float:
    """Fraction of rows whose k most similar columns include a positive.

    sim (S, T) similarities; positives (S, T) bool (several texts can be right, e.g. identical reports).
    """
    return float(top_k_hits(sim, positives, k).mean())


def top_k_hits(sim: np.ndarray, positives: np.ndarray, k: int = 1) -> np.ndarray:
    """(S,) bool: whether each row's k most similar columns include a positive."""
    sim, positives = np.asarray(sim), np.asarray(positives, bool)
    if sim.shape != positives.shape or sim.ndim != 2:
        raise ValueError(f"sim {sim.shape} and positives {positives.shape} must be the same (S, T) shape")
    if sim.shape[0] == 0:
        raise ValueError("no rows to score")
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]  # (S, k)
    return np.take_along_axis(positives, top, axis=1).any(axis=1)
