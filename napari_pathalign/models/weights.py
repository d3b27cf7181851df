"""Loading weights from local files: safetensors, or torch checkpoints with ``weights_only=True``."""

from __future__ import annotations

import hashlib
from pathlib import Path

from napari_pathalign.models.spec import EncoderError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.safetensors")


def weights_hash(path: Path | None) -> str:
    """sha256 of the weight file(s): part of every feature cache key."""
    if path is None:
        return "none"
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def load_state_dict(path: Path, name: str) -> dict:
    """A flat tensor dict from a file, or from the weight file inside a folder."""
    import torch

    if path.is_dir():
        found = (
            [path / f for f in WEIGHT_FILES if (path / f).exists()]
            + sorted(path.glob("*.safetensors"))
            + sorted(path.glob("*.pth"))
            + sorted(path.glob("*.pt"))
        )
        if not found:
            raise EncoderError(
                (
                    f"no weight file in {path} for {name!r}; expected one of {', '.join(WEIGHT_FILES)}, *.safetensors, "
                    "*.pth or *.pt"
                )
            )
        path = found[0]
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EncoderError(
            (
                f"could not read weights {path} for {name!r} ({type(exc).__name__}: {exc}); the file may be "
                "truncated or not a checkpoint"
            )
        ) from exc
    for key in ("state_dict", "model", "teacher"):  # common checkpoint wrappers
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise EncoderError(f"{path} holds no tensor dictionary for {name!r}")
    return state


def load_into(module, state: dict, path: Path, name: str, strip: tuple[str, ...] = ()) -> None:
    """Load ``state`` strictly; on mismatch say which keys are wrong, never load partially."""
    for prefix in strip:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''} ({len(keys)})"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        )
        raise EncoderError(
            f"weights {path} do not fit the {name!r} architecture ({detail}); check that the file is {name}'s"
        )
    module.load_state_dict(state, strict=True)
