"""Zero-shot classification from prompt ensembles (CLIP's recipe, max over queries as PathAlign).

Each class is several prompts; their text embeddings are averaged and renormalised (ensembling in
embedding space, CLIP's choice: one vector per class, robust to one odd phrasing). Class
probabilities are a softmax of the model's learnt temperature times the similarities, so they are
as sharp as the model was trained to be, not a tuned display constant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_pathalign.core.heatmap import Heatmap


@dataclass
class ZeroShot:
    """Slide-level class probabilities and where on the slide each class is."""

    probabilities: dict[str, float]  # class -> probability; sums to 1
    similarities: dict[str, float]  # class -> cosine similarity of the slide to the class ensemble
    heatmaps: dict[str, Heatmap] = field(default_factory=dict)  # class -> per-patch probability of that class
    temperature: float = 1.0  # the model's logit scale used in the softmax
    model: str = ""  # which model scored it ('retrieval' or 'generation')

    @property
    def best(self) -> str:
        return max(self.probabilities, key=self.probabilities.get)


def default_classes_file() -> Path:
    from napari_pathalign.core.resources import RESOURCES

    return RESOURCES / "zero_shot_classes.json"


def load_class_sets(path: str | Path | None = None) -> tuple[dict[str, dict[str, list[str]]], str]:
    """Class sets {set name: {class: [prompts]}} and the default set's name from a JSON file.

    Accepts our format ({"default": ..., "sets": {...}}) or one flat {class: [prompts]} object.
    """
    path = Path(path) if path is not None else default_classes_file()
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ValueError(f"class file {path} does not exist; pass a JSON file of {{class: [prompts]}}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"class file {path} is not valid JSON ({exc}); expected {{class: [prompts]}}") from exc
    if isinstance(data, dict) and "sets" in data:
        sets = data["sets"]
        default = data.get("default", next(iter(sets), ""))
    else:
        sets, default = {"classes": data}, "classes"
    if not isinstance(sets, dict) or default not in sets:
        raise ValueError(
            (
                f"class file {path}: no class set named {default!r}; expected "
                f"{{'default': name, 'sets': {{name: {{class: [prompts]}}}}}}"
            )
        )
    for name, classes in sets.items():
        check_classes(classes, f"class file {path}, set {name!r}")
    return sets, default


def check_classes(classes, where: str = "classes") -> dict[str, list[str]]:
    """At least two classes, each with at least one non-empty prompt; returns them cleaned."""
    if not isinstance(classes, dict) or len(classes) < 2:
        raise ValueError(f"{where}: expected a dict of at least 2 classes {{name: [prompts]}}, got {classes!r:.80}")
    out = {}
    for name, prompts in classes.items():
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = (
            [p.strip() for p in prompts if isinstance(p, str) and p.strip()]
            if isinstance(prompts, (list, tuple))
            else []
        )
        if not str(name).strip() or not prompts:
            raise ValueError(f"{where}: class {name!r} needs a name and at least one non-empty prompt")
        out[str(name).strip()] = prompts
    return out


def class_embeddings(model, classes: dict[str, list[str]]) -> np.ndarray:
    """(C, E) one normalised embedding per class: the mean of its prompts' embeddings."""
    out = []
    for prompts in classes.values():
        e = model.encode_text(list(prompts)).mean(0)  # (E,)
        out.append(e / max(float(np.linalg.norm(e)), 1e-12))
    return np.stack(out).astype(np.float32)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def max_over_queries(embedding: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """(..., Q, E) x (T, E) -> (..., T) cosine similarity, max over queries (as in training)."""
    return np.einsum("...qe,te->...qt", embedding, text_emb).max(axis=-2)


def slide_zero_shot(analysis, classes: dict[str, list[str]] | None = None, model: str = "retrieval") -> ZeroShot:
    """Class probabilities of the slide (softmax with the model's temperature) and a map per class."""
    analysis.need_ready()
    if classes is None:
        sets, default = load_class_sets()
        classes = sets[default]
    classes = check_classes(classes)
    m = analysis.models[model]
    cls = class_embeddings(m, classes)  # (C, E)
    temperature = float(m.scale().detach())
    sims = max_over_queries(analysis.embedding(model).embedding, cls)  # (C,)
    probs = softmax(temperature * sims)
    names = list(classes)
    gen = analysis.models["generation"]
    local = softmax(
        float(gen.scale().detach()) * analysis.neighbourhood_similarity(class_embeddings(gen, classes)), axis=1
    )  # (N, C)
    maps = {
        c: analysis.heatmap(local[:, k], "zero-shot", f"P({c}) per region", cls=c, classes=names)
        for k, c in enumerate(names)
    }
    return ZeroShot(dict(zip(names, map(float, probs))), dict(zip(names, map(float, sims))), maps, temperature, model)
