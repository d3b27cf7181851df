"""What a patch encoder is (``EncoderSpec``) and the registry that names them; no builders here.

``encoder_zoo`` registers the builders, ``encoders`` looks them up and loads weights: this module sits
under both so that neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


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


ENCODERS: dict[str, EncoderSpec] = {}


def register(spec: EncoderSpec) -> EncoderSpec:
    if spec.name in ENCODERS:
        raise ValueError(f"encoder {spec.name!r} is already registered")
    ENCODERS[spec.name] = spec
    return spec
