"""``PatchEncoder``: uint8 patches in, L2-unnormalised float32 features out, on CPU or CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_pathalign.models.spec import EncoderError, EncoderSpec
from napari_pathalign.models.weights import weights_hash


def pick_device(device: str = "auto"):
    """("cuda" with bf16 autocast when there is a GPU, else "cpu" in float32), checked."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EncoderError(
            f"device {device!r} asked for, but torch sees no CUDA GPU (torch {torch.__version__}); use device='cpu'"
        )
    if device != "cpu" and not device.startswith("cuda"):
        raise EncoderError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    dtype = (
        torch.bfloat16
        if device.startswith("cuda") and torch.cuda.is_bf16_supported()
        else (torch.float16 if device.startswith("cuda") else torch.float32)
    )
    return torch.device(device), dtype


def resize_patches(x, size: int):
    """(B, 3, s, s) float -> (B, 3, size, size): the antialiased bilinear resize every encoder input gets."""
    import torch.nn.functional as F

    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


class PatchEncoder:
    """A patch encoder ready to run: resizes, normalises and batches; owns no tokenisation or I/O."""

    def __init__(self, spec: EncoderSpec, module, weights: Path | None, device: str = "auto"):
        self.spec = spec
        self.name, self.dim, self.input_size = spec.name, spec.dim, spec.input_size
        self.mean, self.std, self.native_mpp = spec.mean, spec.std, spec.native_mpp
        self.weights = weights
        self.weights_hash = weights_hash(weights)
        self.device, self.dtype = pick_device(device)
        self.module = module.eval().to(self.device)
        for p in self.module.parameters():
            p.requires_grad_(False)

    def __repr__(self) -> str:
        return (
            f"PatchEncoder({self.name!r}, dim={self.dim}, input={self.input_size}px, device={self.device}, "
            f"dtype={str(self.dtype).replace('torch.', '')})"
        )

    def encode(self, patches: np.ndarray) -> np.ndarray:
        """Features (B, dim) float32 of uint8 patches (B, P, P, 3)."""
        import torch

        if patches.ndim != 4 or patches.shape[-1] != 3 or patches.dtype != np.uint8:
            raise ValueError(f"patches must be uint8 (B, P, P, 3), got {patches.dtype} {patches.shape}")
        x = torch.from_numpy(np.ascontiguousarray(patches)).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, P, P) in [0, 1]
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = resize_patches(x, self.input_size)
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        x = (x - mean) / std
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=self.dtype, enabled=self.device.type == "cuda"),
        ):
            feats = self.module(x)  # (B, dim)
        if feats.shape[-1] != self.dim:
            raise RuntimeError(f"{self.name} returned {tuple(feats.shape)}, expected (B, {self.dim})")
        return feats.float().cpu().numpy()
