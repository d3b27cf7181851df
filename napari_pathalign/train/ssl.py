"""Self-supervised training of the embedded patch encoder (SimCLR) on real H&E tiles, on a CPU.

Two augmented views of each tile (64-px crops at about 1 µm/px) should embed close together and
far from the other tiles of the batch (NT-Xent). No labels are used. Only the encoder's CNN learns;
its fixed stain statistics are standardised on the same tiles afterwards. Augmentations run
batched in torch (affine resampling for crop/scale/rotation/flip, stain-like colour jitter, blur),
so a 2-core machine spends its time in the network, not in Python image code.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_pathalign.models.embedded_encoder import EmbeddedEncoder
from napari_pathalign.models.encoders import IMAGENET, encoder_spec

MEAN = torch.tensor(IMAGENET[0]).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET[1]).view(1, 3, 1, 1)


@dataclass
class SSLConfig:
    """SimCLR recipe for the embedded encoder."""

    # training view side in pixels: crops of the 96-px tiles (about 1 µm/px), ~2.7x the steps of 96-px views per CPU-
    # minute
    size: int = 64
    batch_size: int = 256  # tiles per step (2 views each)
    minutes: float = 18.0  # wall-clock budget; the cosine schedule is laid over it
    lr: float = 2e-3  # AdamW peak learning rate
    weight_decay: float = 1e-4
    temperature: float = 0.2  # NT-Xent temperature
    min_scale: float = 0.3  # smallest crop area fraction (of the 96-px tile: a 53-px crop, shown at 1.2x)
    max_scale: float = 1.0  # largest crop area fraction (the whole tile, shown at 0.67x)
    colour: float = 1.0  # strength of the colour jitter (1: gain +-12%, saturation 0.6-1.4, 10% grayscale)
    seed: int = 0


def load_tiles(paths: list[Path], mpp: list[float], target_mpp: float = 1.0, size: int = 96) -> torch.Tensor:
    """Tiles resized to ``target_mpp`` (at least ``size``, centre-cropped to it) as uint8 (N, 3, S, S)."""
    from PIL import Image

    out = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    for i, (p, m) in enumerate(zip(paths, mpp)):
        im = Image.open(p).convert("RGB")
        side = max(
            size, round(im.width * m / target_mpp)
        )  # tiles smaller than that (Kather: 74 px) are enlarged, not padded
        im = im.resize((side, side), Image.BILINEAR) if side != im.width else im
        a = torch.from_numpy(np.array(im)).permute(2, 0, 1)  # (3, s, s)
        off = (a.shape[-1] - size) // 2
        out[i] = a[:, off : off + size, off : off + size]
    return out


def augment(x: torch.Tensor, cfg: SSLConfig, g: torch.Generator) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> one random view, normalised float (B, 3, size, size)."""
    b = x.shape[0]
    x = x.float() / 255
    scale = torch.sqrt(torch.empty(b).uniform_(cfg.min_scale, cfg.max_scale, generator=g))  # crop side fraction
    shift = (1 - scale)[:, None] * (torch.rand(b, 2, generator=g) * 2 - 1)  # (B, 2) keeps the crop inside
    angle = torch.randint(4, (b,), generator=g).float() * (math.pi / 2)  # rotations by 90 degrees
    flip = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * scale * flip, -sin * scale
    theta[:, 1, 0], theta[:, 1, 1] = sin * scale * flip, cos * scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, (b, 3, cfg.size, cfg.size), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    # stain and scanner variation: per-channel gain, brightness, contrast, saturation
    k = cfg.colour
    gain = 1 + torch.empty(b, 3, 1, 1).uniform_(-0.12 * k, 0.12 * k, generator=g)
    x = x * gain + torch.empty(b, 1, 1, 1).uniform_(-0.1 * k, 0.1 * k, generator=g)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (1 + torch.empty(b, 1, 1, 1).uniform_(-0.3, 0.3, generator=g)) + mean
    gray = x.mean(dim=1, keepdim=True)
    sat = torch.empty(b, 1, 1, 1).uniform_(max(0.0, 1 - 0.4 * k), 1 + 0.4 * k, generator=g)
    sat = torch.where(torch.rand(b, 1, 1, 1, generator=g) < 0.1 * k, torch.zeros_like(sat), sat)  # some grayscale
    x = gray + (x - gray) * sat
    blur = torch.rand(b, generator=g) < 0.3
    if blur.any():
        kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
        kernel = (kernel[:, None] * kernel[None, :]) / 256
        xb = F.conv2d(F.pad(x[blur], (2, 2, 2, 2), mode="reflect"), kernel.expand(3, 1, 5, 5).contiguous(), groups=3)
        x[blur] = xb
    return (x.clamp(0, 1) - MEAN) / STD


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR loss: each view's positive is the other view of its tile; the rest are negatives."""
    z = F.normalize(torch.cat([z1, z2]), dim=-1)  # (2B, d)
    sim = z @ z.t() / temperature  # (2B, 2B)
    n = z1.shape[0]
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def train_ssl(
    tiles: torch.Tensor, cfg: SSLConfig = SSLConfig(), log=print, weights: torch.Tensor | None = None
) -> tuple[EmbeddedEncoder, dict]:
    """Train for ``cfg.minutes`` of wall time; returns the encoder (eval mode) and a summary.

    ``weights`` (N,): how often each tile is drawn, relative to the others (default: uniform), e.g. so that
    every tissue gives the same share of the views however many tiles it has.
    """
    if weights is not None and (len(weights) != len(tiles) or not bool((weights >= 0).all()) or weights.sum() <= 0):
        raise ValueError(f"weights must be {len(tiles)} non-negative numbers, not all zero")
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    encoder = EmbeddedEncoder()
    head = nn.Sequential(nn.Linear(encoder.cnn_dim, 512), nn.BatchNorm1d(512), nn.GELU(), nn.Linear(512, 128))
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    budget = cfg.minutes * 60
    start = time.time()
    step, losses = 0, []
    encoder.train()
    head.train()
    while (elapsed := time.time() - start) < budget:
        frac = elapsed / budget
        for group in opt.param_groups:
            group["lr"] = cfg.lr * min(1.0, (step + 1) / 30) * 0.5 * (1 + math.cos(math.pi * frac))
        if weights is None:
            idx = torch.randint(len(tiles), (cfg.batch_size,), generator=g)
        else:
            idx = torch.multinomial(weights.double(), cfg.batch_size, replacement=True, generator=g)
        batch = tiles[idx]
        v1, v2 = augment(batch, cfg, g), augment(batch, cfg, g)
        z = head(encoder.cnn(torch.cat([v1, v2])))  # (2B, 128): only the CNN learns; the stain statistics are fixed
        loss = nt_xent(z[: cfg.batch_size], z[cfg.batch_size :], cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 50 == 0:
            log(f"ssl step {step}  loss {np.mean(losses[-50:]):.3f}  {elapsed / 60:.1f} min")
    encoder.eval()
    encoder.stain.fit(tiles, size=encoder_spec("embedded").input_size)
    return encoder, {
        "steps": step,
        "tiles_seen": step * cfg.batch_size,
        "first_loss": float(np.mean(losses[:20])),
        "last_loss": float(np.mean(losses[-50:])),
        "minutes": (time.time() - start) / 60,
    }
