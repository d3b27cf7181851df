"""A tissue measurement head: per-patch class probabilities from what the analysis already holds.

The claim checker measures how much of the slide each tissue covers. Zero-shot prompts do it for any
model; a small head trained for one model does it better (tumour fraction Spearman 0.92 vs 0.82 on
the held-out demo slides). The head is a multinomial logistic regression per organ on each patch's
neighbourhood embedding (the generation model's Q-Former over the 3 x 3 patches, mean over
queries) concatenated with the patch's own encoder features, standardised. It is trained on
labelled *training* tiles assembled into slides (``scripts/fit_claim_checker.py``) and applies only
to the model and encoder it was trained for (their weights hashes are stored with it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class OrganHead:
    """The classifier of one organ's tissue classes."""

    classes: list[str]  # report tissue classes (the ontology's labels), in output order
    mean: np.ndarray  # (D,) input standardisation
    scale: np.ndarray  # (D,)
    coef: np.ndarray  # (C, D) or (1, D) for two classes (sklearn's binary form)
    intercept: np.ndarray  # (C,) or (1,)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, C) class probabilities of N patches' inputs (N, D)."""
        z = (np.asarray(x, np.float64) - self.mean) / self.scale @ self.coef.T + self.intercept  # (N, C) or (N, 1)
        if z.shape[1] == 1:  # binary: P(second class) = sigmoid
            p = 1 / (1 + np.exp(-z[:, 0]))
            return np.stack([1 - p, p], 1)
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)


@dataclass
class MeasureHead:
    """Heads per organ for one (generation model, patch encoder) pair."""

    organs: dict[str, OrganHead]  # organ zero-shot set name ('lymph node tissue', ...) -> its head
    model_hash: str  # the generation model's weights hash (its neighbourhood embeddings are inputs)
    encoder_hash: str  # the patch encoder's weights hash (its features are inputs)
    provenance: dict  # how it was trained

    def applies_to(self, model_hash: str, encoder_hash: str) -> bool:
        return model_hash == self.model_hash and encoder_hash == self.encoder_hash

    def to_dict(self) -> dict:
        organs = {
            name: {
                "classes": h.classes,
                **{k: np.asarray(getattr(h, k)).round(6).tolist() for k in ("mean", "scale", "coef", "intercept")},
            }
            for name, h in self.organs.items()
        }
        return {
            "model_hash": self.model_hash,
            "encoder_hash": self.encoder_hash,
            "provenance": self.provenance,
            "organs": organs,
        }

    @classmethod
    def from_dict(cls, d: dict) -> MeasureHead:
        organs = {
            name: OrganHead(
                list(h["classes"]), *(np.asarray(h[k], np.float64) for k in ("mean", "scale", "coef", "intercept"))
            )
            for name, h in d["organs"].items()
        }
        return cls(organs, d["model_hash"], d["encoder_hash"], d.get("provenance", {}))


def patch_inputs(analysis) -> np.ndarray:
    """(N, E + D) the head's input per patch: neighbourhood embedding (mean over queries) and encoder features."""
    stored = analysis.neighbourhoods  # (N, Q, E) float16
    regions = np.empty((len(stored), stored.shape[2]), np.float32)
    for start in range(0, len(stored), 1024):  # in chunks: no float32 copy of all of it (300+ MB), short GIL holds
        regions[start : start + 1024] = stored[start : start + 1024].mean(1, dtype=np.float32)
    return np.concatenate([regions, np.asarray(analysis.features.features, np.float32)], 1)


def head_file() -> Path:
    from napari_pathalign.core.resources import RESOURCES

    return RESOURCES / "embedded_measure_head.json"


def load_head(path: str | Path | None = None) -> MeasureHead | None:
    """The shipped head (or the one at ``path``); None when there is none."""
    p = Path(path) if path is not None else head_file()
    if not p.is_file():
        return None
    return MeasureHead.from_dict(json.loads(p.read_text()))
