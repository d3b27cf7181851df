"""Registry of patch encoders: one small builder per name, weights only from local paths.

Each entry says what the model needs (input size, normalisation, native resolution, output
dimension, how its weights are laid out). ``load_patch_encoder`` builds the architecture, loads
the user's local weights and refuses anything that does not fit; nothing is fetched from a hub
and nothing ever falls back to random weights (only the ``test-tiny`` encoder is random, on
purpose, for fast tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
RESOURCES = Path(str(files("napari_pathalign.resources")))  # resources/ as installed


class EncoderError(ValueError):
    """An encoder name, weights file or device that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class EncoderSpec:
    """What a patch encoder is and needs."""

    name: str
    dim: int  # output feature dimension
    input_size: int  # side of the square input in pixels
    mean: tuple[float, float, float]  # per-channel normalisation (after scaling to [0, 1])
    std: tuple[float, float, float]
    native_mpp: float  # µm per pixel the model was trained at
    build: Callable  # (weights: Path | None) -> torch.nn.Module mapping (B, 3, S, S) -> (B, dim)
    needs_weights: bool = True  # False only for the random test encoder and the shipped embedded one
    description: str = ""
    default_weights: Path | None = None  # weights shipped with the package (embedded), used when none are given


_REGISTRY: dict[str, EncoderSpec] = {}


def register(spec: EncoderSpec) -> EncoderSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"encoder {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def encoder_spec(name: str) -> EncoderSpec:
    _ensure_builtins()
    if name not in _REGISTRY:
        raise EncoderError(f"unknown patch encoder {name!r}; available: {', '.join(available_encoders())}")
    return _REGISTRY[name]


def available_encoders() -> list[str]:
    _ensure_builtins()
    return sorted(_REGISTRY)


def load_patch_encoder(name: str, weights: str | Path | None = None, device: str = "auto"):
    """Build encoder ``name`` with local ``weights`` (a file or folder) on ``device`` ("auto": CUDA if present)."""
    from napari_pathalign.models.patch_encoder import PatchEncoder

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


def _ensure_builtins() -> None:
    from napari_pathalign.models import encoder_zoo  # noqa: F401 - registers on import
