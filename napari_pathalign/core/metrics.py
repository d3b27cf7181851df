"""Small metrics shared by training and evaluation: retrieval top-k on a similarity matrix, ROC AUC."""

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


def auc(score: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC AUC of ``score`` for the positives against the rest, as the Mann-Whitney statistic (ties
    count half, as sklearn's; thousands of bootstrap draws in a second); None when one side is empty."""
    from scipy.stats import rankdata

    score, positive = np.asarray(score, np.float64), np.asarray(positive, bool)
    if score.shape != positive.shape:
        raise ValueError(f"score {score.shape} and positive {positive.shape} must have the same shape")
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if not n_pos or not n_neg:
        return None
    ranks = rankdata(score)  # (S,) average ranks
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
