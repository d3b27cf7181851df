"""Registry of patch encoders: one small builder per name, weights only from local paths.

Each entry says what the model needs (input size, normalisation, native resolution, output
dimension, how its weights are laid out). ``load_patch_encoder`` builds the architecture, loads
the user's local weights and refuses anything that does not fit; nothing is fetched from a hub
and nothing ever falls back to random weights (only the ``test-tiny`` encoder is random, on
purpose, for fast tests).
"""

from __future__ import annotations

from pathlib import Path

from napari_pathalign.core.resources import RESOURCES
from napari_pathalign.models import encoder_zoo  # noqa: F401 - registers the builders on import
from napari_pathalign.models.patch_encoder import PatchEncoder
from napari_pathalign.models.spec import ENCODERS, IMAGENET, EncoderError, EncoderSpec, register

__all__ = [
    "IMAGENET",
    "RESOURCES",
    "EncoderError",
    "EncoderSpec",
    "available_encoders",
    "encoder_spec",
    "load_patch_encoder",
    "register",
]


def encoder_spec(name: str) -> EncoderSpec:
    if name not in ENCODERS:
        raise EncoderError(f"unknown patch encoder {name!r}; available: {', '.join(available_encoders())}")
    return ENCODERS[name]


def available_encoders() -> list[str]:
    return sorted(ENCODERS)


def load_patch_encoder(name: str, weights: str | Path | None = None, device: str = "auto"):
    """Build encoder ``name`` with local ``weights`` (a file or folder) on ``device`` ("auto": CUDA if present)."""
    spec = encoder_spec(name)
    path = Path(weights).expanduser() if weights is not None else None
    if path is None and spec.default_weights is not None and spec.default_weights.exists():
        path = spec.default_weights  # so its hash (in every cache key and checkpoint) is the shipped file's
    if path is None and spec.needs_weights:
        raise EncoderError(
            f"encoder {name!r} has no weights here: pass weights=<local file or folder> "
            f"({spec.description}). Nothing is downloaded, and random weights are never used."
        )
    if path is not None and not path.exists():
        raise EncoderError(f"weights for {name!r} not found at {path}")
    return PatchEncoder(spec, spec.build(path), path, device)
