"""How far a slide's patch features lie from a model's training data: the in-distribution score.

A model knows only the tissue it was trained on. ``FeatureDistribution`` is a Gaussian fitted to
the patch features of the training slides (mean, and a Ledoit-Wolf shrinkage covariance of the
standardised features); a patch's distance is its Mahalanobis distance under it. Scores are
relative to the median distance of *held-out* training patches (calibration slides the Gaussian
did not see, since patches it was fitted on lie closer than new tissue of the same kind would):

- patch score = distance / reference - 1: 0 for a typical training patch, 0.2 for a patch 20%
  farther from the training data than a typical training patch;
- slide score = the median patch score: one odd region does not decide it, and the whole slide
  moving away does;
- threshold = a high quantile (0.99) of the calibration slides' scores; above it the slide warns.

The distribution belongs to one encoder's features: it stores the encoder name and weights hash
and refuses features of any other. Only numpy is needed to load and score (sklearn to fit).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_pathalign.core.atomic import atomic_write_text

FORMAT = "pathalign-feature-distribution-1"
EMBEDDED_FILE = "embedded_feature_distribution.json"  # in napari_pathalign/resources


@dataclass(frozen=True)
class InDistribution:
    """How like the model's training data one slide is; ``warn`` when the model should not be trusted on it."""

    score: float  # median patch score: ~0 like the training data, 0.2 = typical patch 20% farther than a training patch
    threshold: float  # warning level, from held-out training slides
    warn: bool  # score > threshold
    n_patches: int  # patches the score is the median of
    explanation: str  # one sentence for the pathologist


@dataclass
class FeatureDistribution:
    """Gaussian model of one encoder's patch features on a model's training slides (see module docstring)."""

    mean: np.ndarray  # (D,) mean of the training patch features
    scale: np.ndarray  # (D,) their standard deviation: features are standardised before the covariance
    whitener: np.ndarray  # (D, D) lower-triangular W, W.T @ W = inverse shrinkage covariance of standardised features
    reference: float  # median Mahalanobis distance of held-out training patches: patch score 0
    threshold: float  # slide score above which to warn (inf: not calibrated, never warns)
    encoder: str  # patch encoder the features come from
    weights_hash: str  # hash of its weights (``PatchEncoder.weights_hash``)
    training_data: str = "the model's training data"  # in words, for explanations
    provenance: dict = field(default_factory=dict)  # what it was fitted and calibrated on

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    # -- fitting -------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        calibration: Sequence[np.ndarray] = (),
        quantile: float = 0.99,
        encoder: str = "",
        weights_hash: str = "",
        training_data: str = "the model's training data",
        provenance: dict | None = None,
    ) -> FeatureDistribution:
        """Fit on training patch ``features`` (N, D); calibrate on held-out training slides (each (n_i, D)).

        Without ``calibration`` the reference is the median distance of the fitted patches
        themselves (biased low: new tissue of the same kind scores above 0) and nothing warns.
        """
        from sklearn.covariance import LedoitWolf

        features = _as_features(features, None).astype(np.float64)  # the covariance in double precision
        if len(features) < 2:
            raise ValueError(f"need at least 2 training patches to fit a distribution, got {len(features)}")
        if not 0 < quantile <= 1:
            raise ValueError(f"quantile must be in (0, 1], got {quantile!r}")
        mean = features.mean(0)
        scale = features.std(0)
        scale = np.where(scale > 1e-6, scale, 1.0)  # constant features carry no information: leave them unscaled
        lw = LedoitWolf(assume_centered=True).fit((features - mean) / scale)
        chol = np.linalg.cholesky(lw.covariance_)  # covariance = L @ L.T, so |L^-1 z| is the Mahalanobis distance
        whitener = np.linalg.solve(chol, np.eye(len(chol)))  # (D, D) lower-triangular L^-1
        dist = cls(
            mean.astype(np.float32),
            scale.astype(np.float32),
            whitener.astype(np.float32),
            1.0,
            float("inf"),
            encoder,
            weights_hash,
            training_data,
            dict(provenance or {}),
        )
        held_out = [_as_features(s, dist.dim) for s in calibration]
        dist.reference = float(np.median(dist.mahalanobis(np.concatenate(held_out) if held_out else features)))
        dist.provenance.update(
            fit_patches=len(features),
            shrinkage=round(float(lw.shrinkage_), 6),
            reference_from="calibration slides" if held_out else "the fitted patches (uncalibrated)",
        )
        if held_out:
            scores = np.array([dist.slide_score(s).score for s in held_out if len(s)])
            dist.threshold = float(np.quantile(scores, quantile))
            dist.provenance.update(
                calibration_slides=len(scores),
                calibration_patches=int(sum(len(s) for s in held_out)),
                threshold_quantile=quantile,
                calibration_scores={
                    q: round(float(np.quantile(scores, float(q))), 4) for q in ("0.5", "0.9", "0.99", "1.0")
                },
            )
        return dist

    # -- scoring ---------------------------------------------------------------------------------
    def mahalanobis(self, features: np.ndarray) -> np.ndarray:
        """(N,) Mahalanobis distance of each patch feature (N, D) from the training mean."""
        z = (_as_features(features, self.dim) - self.mean) / self.scale  # (N, D) standardised
        return np.linalg.norm(z @ self.whitener.T, axis=1)  # (N,) |W z|

    def patch_scores(self, features: np.ndarray) -> np.ndarray:
        """(N,) distance of each patch relative to a typical held-out training patch, minus 1 (0: typical)."""
        return self.mahalanobis(features) / self.reference - 1.0

    def slide_score(self, features) -> InDistribution:
        """Score one slide's patch features: an (N, D) array, or ``SlideFeatures`` (its encoder is checked)."""
        if hasattr(features, "features") and hasattr(features, "weights_hash"):
            self.check_encoder(features.encoder, features.weights_hash)
            features = features.features
        features = _as_features(features, self.dim)
        if len(features) == 0:
            raise ValueError(
                (
                    "the slide has no patch features to score (no tissue patches were found); nothing to compare "
                    "with the training data"
                )
            )
        score = float(np.median(self.patch_scores(features)))
        warn = bool(score > self.threshold)
        return InDistribution(score, self.threshold, warn, len(features), self._explain(score, warn, len(features)))

    def _explain(self, score: float, warn: bool, n: int) -> str:
        limit = (
            f"warning above {self.threshold:+.0%}"
            if np.isfinite(self.threshold)
            else "not calibrated: no warning level"
        )
        where = f"{abs(score):.0%} {'farther from' if score >= 0 else 'closer to'}"
        few = f" Only {n} patches were scored, so this is a rough estimate." if n < 10 else ""
        if warn:
            return (
                f"This tissue is unlike {self.training_data}: its typical patch lies {where} the training "
                f"features than a typical training patch does ({limit}). Treat drafts and answers for this "
                f"slide as unreliable.{few}"
            )
        return (
            f"This tissue resembles {self.training_data}: its typical patch lies {where} the training features "
            f"than a typical training patch does ({limit}).{few}"
        )

    # -- which encoder -------------------------------------------------------------------------------
    def check_encoder(self, encoder: str, weights_hash: str) -> None:
        """Raise ``ValueError`` unless features from ``encoder`` with ``weights_hash`` are what this was fitted on."""
        if (encoder, weights_hash) != (self.encoder, self.weights_hash):
            raise ValueError(
                f"this feature distribution was fitted on {self.encoder!r} features (weights {self.weights_hash}), "
                f"got {encoder!r} (weights {weights_hash}); its scores would mean nothing. Refit it for this encoder "
                "(scripts/fit_feature_distribution.py) or use the encoder it belongs to"
            )

    # -- files ----------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write JSON: the arrays as base64 little-endian float32 (the whitener's lower triangle only)."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_doc(), indent=1) + "\n")
        return path

    def to_doc(self) -> dict:
        """The JSON document ``save`` writes (``from_doc`` reads it back)."""
        rows, cols = np.tril_indices(self.dim)
        return {
            "format": FORMAT,
            "method": (
                "Ledoit-Wolf Gaussian on standardised patch features; patch score = Mahalanobis distance / "
                "reference - 1; slide score = median patch score"
            ),
            "encoder": self.encoder,
            "weights_hash": self.weights_hash,
            "dim": self.dim,
            "reference": self.reference,
            "threshold": self.threshold if np.isfinite(self.threshold) else None,
            "training_data": self.training_data,
            "provenance": self.provenance,
            "mean": _encode(self.mean),
            "scale": _encode(self.scale),
            "whitener_lower": _encode(self.whitener[rows, cols]),
        }

    @classmethod
    def load(cls, path: str | Path, encoder=None) -> FeatureDistribution:
        """Read a saved distribution; with ``encoder`` (a ``PatchEncoder``), refuse one fitted on another."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(
                f"could not read a feature distribution from {path} ({type(exc).__name__}: {exc})"
            ) from exc
        return cls.from_doc(doc, str(path), encoder)

    @classmethod
    def from_doc(cls, doc, source: str = "the document", encoder=None) -> FeatureDistribution:
        """A distribution from the document ``to_doc`` makes; ``source`` names it in errors."""
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(
                (
                    f"{source} is not a feature distribution "
                    f"(format {doc.get('format') if isinstance(doc, dict) else None!r}; "
                    f"expected {FORMAT!r})"
                )
            )
        dim = int(doc["dim"])
        rows, cols = np.tril_indices(dim)
        whitener = np.zeros((dim, dim), np.float32)
        whitener[rows, cols] = _decode(doc["whitener_lower"], len(rows))
        threshold = float("inf") if doc["threshold"] is None else float(doc["threshold"])
        dist = cls(
            _decode(doc["mean"], dim),
            _decode(doc["scale"], dim),
            whitener,
            float(doc["reference"]),
            threshold,
            doc["encoder"],
            doc["weights_hash"],
            doc.get("training_data", "the model's training data"),
            doc.get("provenance", {}),
        )
        if encoder is not None:
            dist.check_encoder(encoder.name, encoder.weights_hash)
        return dist


def load_embedded_distribution(encoder=None) -> FeatureDistribution:
    """The distribution shipped for the embedded encoder, checked against the shipped weights (or ``encoder``)."""
    return load_embedded(
        FeatureDistribution, EMBEDDED_FILE, "feature distribution", "fit_feature_distribution", encoder
    )


def load_embedded(cls, file_name: str, what: str, script: str, encoder=None):
    """``cls.load`` of a file in resources/ fitted on the embedded encoder's features, checked against
    ``encoder`` or (None) against the shipped encoder weights; ValueError naming ``scripts/<script>.py``
    when the file is missing."""
    from napari_pathalign.core.resources import RESOURCES
    from napari_pathalign.models.weights import weights_hash

    path = RESOURCES / file_name
    if not path.exists():
        raise ValueError(
            f"no {what} for the embedded encoder in this install ({path} is missing); build it with scripts/{script}.py"
        )
    loaded = cls.load(path, encoder)
    if encoder is None:
        loaded.check_encoder("embedded", weights_hash(RESOURCES / "embedded_encoder.safetensors"))
    return loaded


def _as_features(features, dim: int | None) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or (dim is not None and features.shape[1] != dim):
        raise ValueError(f"patch features must be (N, {dim if dim is not None else 'D'}), got shape {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError("patch features contain NaN or infinity; re-embed the slide")
    return features


def _encode(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def _decode(text: str, n: int) -> np.ndarray:
    a = np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)
    if a.shape != (n,):
        raise ValueError(f"feature distribution array has {a.size} values, expected {n}; the file is damaged")
    return a
