"""Is this slide inside what the model was trained on? The in-scope score of a slide and of its regions.

A model knows only the tissue it was trained on. ``InScopeModel`` holds one Gaussian of patch
features per training organ (``FeatureDistribution``: mean and a Ledoit-Wolf covariance; lymph node,
colon, lung for the embedded model). A patch's distance is its Mahalanobis distance to the *nearest*
organ, relative to that organ's typical held-out patch (0: like a training patch of that organ, 0.3:
30 % farther). One Gaussian over all organs would be wide enough to take in tissue between them
(skin lies "between" lymph node and colon); one per organ is tight around each.

- slide distance = the 25 % quantile of the patch distances: the slide is in scope when at least a
  quarter of its tissue lies close to a training organ. Artefacts (seams, folds, pen, edges, glass at
  the outline) on up to three quarters of the patches do not flag it; tissue the model never saw is far
  on nearly all of them (docs/out-of-scope.md compares it with the median and the mean);
- threshold = a quantile of held-out in-scope slides' distances (calibration slides the Gaussians
  did not see), chosen so that at most ``false_flag`` of them are flagged;
- in-scope probability = a logistic of the distance, 0.5 at the threshold and 0.95 at the typical
  held-out slide: the number a claim's support is capped by on a flagged slide;
- a region (a patch) is out of scope where its own distance is beyond ``patch_threshold`` (the 0.99
  quantile of held-out in-scope patches): ``InScope.out_share`` is the share of such patches.

Only numpy is needed to load and score (sklearn to fit).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_pathalign.core.atomic import atomic_write_text
from napari_pathalign.models.distribution import FeatureDistribution, load_embedded

FORMAT = "pathalign-in-scope-1"
EMBEDDED_FILE = "embedded_in_scope.json"  # in resources/
SLIDE_QUANTILE = 0.25  # slide distance: this quantile of its patch distances


@dataclass(frozen=True)
class InScope:
    """How far one slide lies inside what the model was trained on; ``flagged`` when it should not be trusted."""

    score: float  # in-scope probability: 0.95 for a typical held-out training-like slide, 0.5 at the threshold
    flagged: bool  # the slide is out of scope: distance above the threshold
    basis: str  # what the score rests on, in words (method, organs, patches)
    distance: float  # 25 % quantile of the patch distances to the nearest training organ (0: typical)
    threshold: float  # distance above which a slide is flagged
    nearest_organ: str  # the training organ most of the patches lie nearest to
    out_share: float  # share of patches that are themselves out of scope (regions the model does not know)
    n_patches: int  # patches scored
    explanation: str  # one or two sentences for the pathologist

    def to_dict(self) -> dict:
        """JSON: ``{"score", "flagged", "basis"}`` and the numbers behind them."""
        return {
            "score": round(float(self.score), 4),
            "flagged": bool(self.flagged),
            "basis": self.basis,
            "distance": round(float(self.distance), 4),
            "threshold": round(float(self.threshold), 4),
            "nearest_organ": self.nearest_organ,
            "out_share": round(float(self.out_share), 4),
            "n_patches": int(self.n_patches),
            "explanation": self.explanation,
        }

    @property
    def banner(self) -> str:
        """The line every dock shows above its results."""
        if self.flagged:
            return (
                f"OUT OF SCOPE (in-scope probability {self.score:.2f}): this tissue is outside what the model was "
                "trained on. Diagnoses, answers and similar cases are not reliable for it."
            )
        return (
            f"In scope (probability {self.score:.2f}): the tissue resembles the model's training {self.nearest_organ}."
        )


@dataclass
class InScopeModel:
    """One feature Gaussian per training organ and a slide threshold (see module docstring)."""

    organs: dict[str, FeatureDistribution]  # organ name -> Gaussian of its training patch features
    threshold: float  # slide distance above which the slide is flagged
    width: float  # logistic width of the in-scope probability (distance units)
    patch_threshold: float  # a patch beyond this distance is itself out of scope
    training_data: str = "the model's training tissue"  # in words, for explanations
    provenance: dict = field(default_factory=dict)  # what it was fitted and calibrated on

    # -- fitting -------------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        fit_slides: Mapping[str, Sequence[np.ndarray]],
        calibration: Mapping[str, Sequence[np.ndarray]],
        false_flag: float = 0.02,
        threshold_slides: Sequence[np.ndarray] | None = None,
        encoder: str = "",
        weights_hash: str = "",
        training_data: str = "the model's training tissue",
        provenance: dict | None = None,
    ) -> InScopeModel:
        """Fit a Gaussian per organ on ``fit_slides[organ]`` (patch features per slide); each organ's
        reference distance comes from its held-out ``calibration[organ]`` slides. The threshold flags at
        most ``false_flag`` of ``threshold_slides`` (default: the calibration slides). Slides made from
        *other sources* than the fit slides (new cases, other source images) lie farther out than held-out
        slides of the same sources: give such slides as ``threshold_slides`` where there are any."""
        if not fit_slides:
            raise ValueError("need the training slides of at least one organ to fit an in-scope model")
        if set(calibration) - set(fit_slides):
            raise ValueError(f"calibration organs {sorted(set(calibration) - set(fit_slides))} have no fit slides")
        if not 0 < false_flag < 1:
            raise ValueError(f"false_flag must be in (0, 1), got {false_flag!r}")
        organs = {}
        for organ, slides in fit_slides.items():
            slides = [s for s in slides if len(s)]
            if not slides:
                raise ValueError(f"organ {organ!r} has no patches to fit on")
            organs[organ] = FeatureDistribution.fit(
                np.concatenate(slides),
                [s for s in calibration.get(organ, ()) if len(s)],
                encoder=encoder,
                weights_hash=weights_hash,
                training_data=organ,
            )
        model = cls(organs, float("inf"), 1.0, float("inf"), training_data, dict(provenance or {}))
        held = [s for slides in calibration.values() for s in slides if len(s)]
        if threshold_slides is not None:
            held = [np.asarray(s, np.float32) for s in threshold_slides if len(s)]
        if held:
            distances = np.array([model.slide_distance(s)[0] for s in held])
            patches = np.concatenate([model.patch_distances(s)[0] for s in held])
            model.threshold = float(np.quantile(distances, 1 - false_flag))
            typical = float(np.median(distances))
            model.width = max((model.threshold - typical) / math.log(19), 1e-3)  # typical -> 0.95, threshold -> 0.5
            model.patch_threshold = float(np.quantile(patches, 0.99))
            model.provenance.update(
                calibration_slides=sum(len(v) for v in calibration.values()),
                threshold_slides=len(held),
                false_flag_target=false_flag,
                calibration_distances={
                    q: round(float(np.quantile(distances, float(q))), 4) for q in ("0.5", "0.9", "0.95", "0.99", "1.0")
                },
            )
        return model

    # -- scoring -------------------------------------------------------------------------------------
    def patch_distances(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,) distance of each patch to its nearest organ, and (N,) the index of that organ."""
        d = np.stack([dist.patch_scores(features) for dist in self.organs.values()], axis=1)  # (N, organs)
        nearest = d.argmin(1)
        return d[np.arange(len(d)), nearest], nearest

    def slide_distance(self, features: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        d, nearest = self.patch_distances(features)
        return float(np.quantile(d, SLIDE_QUANTILE)), d, nearest

    def probability(self, distance: float) -> float:
        """In-scope probability of a slide at ``distance``: 0.5 at the threshold."""
        if not math.isfinite(self.threshold):
            return 1.0
        z = (distance - self.threshold) / self.width
        return float(1.0 / (1.0 + math.exp(min(z, 60.0))))

    def score(self, features) -> InScope:
        """Score one slide's patch features: an (N, D) array, or ``SlideFeatures`` (its encoder is checked)."""
        if hasattr(features, "features") and hasattr(features, "weights_hash"):
            self.check_encoder(features.encoder, features.weights_hash)
            features = features.features
        features = np.asarray(features, np.float32)
        if features.ndim != 2 or len(features) == 0:
            raise ValueError(
                "the slide has no patch features to score (no tissue patches were found); nothing to compare "
                "with the training data"
            )
        distance, d, nearest = self.slide_distance(features)
        names = list(self.organs)
        organ = names[int(np.bincount(nearest, minlength=len(names)).argmax())]
        flagged = bool(distance > self.threshold)
        p = self.probability(distance)
        out_share = float(np.mean(d > self.patch_threshold))
        basis = (
            f"patch features against the training {', '.join(names)} (Mahalanobis distance to the nearest organ, "
            f"25 % quantile over {len(features)} patches; threshold from in-scope slides of new sources)"
        )
        return InScope(
            p,
            flagged,
            basis,
            distance,
            self.threshold,
            organ,
            out_share,
            len(features),
            self._explain(p, flagged, distance, organ, out_share, len(features)),
        )

    def _explain(self, p: float, flagged: bool, distance: float, organ: str, out_share: float, n: int) -> str:
        few = f" Only {n} patches were scored, so this is a rough estimate." if n < 10 else ""
        if flagged:
            return (
                f"This tissue is outside what the model was trained on ({self.training_data}): three quarters of "
                f"its patches lie at least {distance:.0%} farther from the nearest training tissue ({organ}) than a "
                f"typical training patch does (limit {self.threshold:+.0%}); in-scope probability {p:.2f}. "
                f"Diagnoses, answers and similar cases for this slide are not reliable.{few}"
            )
        part = (
            f" {out_share:.0%} of its patches are themselves unlike the training tissue: read findings there with care."
            if out_share >= 0.1
            else ""
        )
        return (
            f"This tissue resembles the model's training {organ} (in-scope probability {p:.2f}; distance "
            f"{distance:+.0%}, limit {self.threshold:+.0%}).{part}{few}"
        )

    def check_encoder(self, encoder: str, weights_hash: str) -> None:
        next(iter(self.organs.values())).check_encoder(encoder, weights_hash)

    # -- files ---------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """One JSON file: the organ Gaussians (``FeatureDistribution`` documents) and the thresholds."""
        organs = {name: dist.to_doc() for name, dist in self.organs.items()}
        doc = {
            "format": FORMAT,
            "method": (
                "one Ledoit-Wolf Gaussian of patch features per training organ; patch distance = Mahalanobis "
                "distance to the nearest organ / that organ's held-out reference - 1; slide distance = 25 % quantile "
                "of the patch distances; probability = logistic, 0.5 at the threshold"
            ),
            "threshold": _finite(self.threshold),
            "width": self.width,
            "patch_threshold": _finite(self.patch_threshold),
            "training_data": self.training_data,
            "provenance": self.provenance,
            "organs": organs,
        }
        path = Path(path)
        atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path, encoder=None) -> InScopeModel:
        """Read a saved model; with ``encoder`` (a ``PatchEncoder``), refuse one fitted on another encoder."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"could not read an in-scope model from {path} ({type(exc).__name__}: {exc})") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or not doc.get("organs"):
            raise ValueError(f"{path} is not an in-scope model (expected format {FORMAT!r} with organs)")
        organs = {
            name: FeatureDistribution.from_doc(sub, f"{path} organ {name!r}") for name, sub in doc["organs"].items()
        }
        model = cls(
            organs,
            _inf(doc.get("threshold")),
            float(doc.get("width", 1.0)),
            _inf(doc.get("patch_threshold")),
            doc.get("training_data", "the model's training tissue"),
            doc.get("provenance", {}),
        )
        if encoder is not None:
            model.check_encoder(encoder.name, encoder.weights_hash)
        return model


def load_embedded_in_scope(encoder=None) -> InScopeModel:
    """The in-scope model shipped for the embedded encoder, checked against the shipped weights (or ``encoder``)."""
    return load_embedded(InScopeModel, EMBEDDED_FILE, "in-scope model", "fit_in_scope", encoder)


def cap_support(probability: float, in_scope: InScope | None) -> float:
    """A claim's support on a flagged slide is at most the slide's in-scope probability."""
    if in_scope is None or not in_scope.flagged:
        return probability
    return min(float(probability), float(in_scope.score))


def _finite(x: float):
    return x if math.isfinite(x) else None


def _inf(x) -> float:
    return float("inf") if x is None else float(x)
