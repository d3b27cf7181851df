"""The slide encoder: transformers' BLIP-2 Q-Former cross-attending one slide's patch features.

Learned queries attend to the patches (plus a 2D encoding of where each patch sits, in µm, so the
same tissue scanned at another magnification lands in the same place). A key padding mask lets
slides with different patch counts share a batch. Attention itself is transformers' code; we only
add the queries, the positional encoding and the masks.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class QFormerConfig:
    """Architecture of the slide Q-Former (stored in every checkpoint's config.json)."""

    feature_dim: int = 384  # D of the patch features it reads (the patch encoder's output)
    hidden_size: int = 256  # H of the queries
    num_layers: int = 4  # transformer layers
    num_heads: int = 4  # attention heads
    intermediate_size: int = 1024  # feed-forward width
    cross_attention_frequency: int = 2  # every k-th layer cross-attends the patches (BLIP-2 uses 2)
    num_queries: int = 32  # 1 for retrieval (PathAlign-R), 32 for generation (PathAlign-G)
    dropout: float = 0.1  # hidden and attention dropout while training
    pos_freqs: int = 16  # sinusoid frequencies per axis of the µm positional encoding
    pos_min_um: float = 32.0  # shortest wavelength of the positional encoding (about a patch)
    pos_max_um: float = 32768.0  # longest wavelength (longer than a slide)
    max_text_tokens: int = 128  # text positions the joint (ITM/ITG) passes accept


@dataclass
class QFormerOutput:
    """What the Q-Former returns for a batch of slides."""

    queries: torch.Tensor  # (B, Q, H) query outputs
    text: torch.Tensor | None = None  # (B, T, H) text-token outputs of a joint pass, else None
    cross_attentions: torch.Tensor | None = None  # (layers, B, heads, Q, N) when asked for, else None


def positional_encoding(xy_um: torch.Tensor, valid: torch.Tensor, cfg: QFormerConfig) -> torch.Tensor:
    """Sinusoids of each patch's position in µm relative to the slide's tissue centre.

    xy_um (B, N, 2), valid (B, N) bool -> (B, N, 4 * pos_freqs). Centring makes it independent of
    where the tissue sits on the glass.
    """
    w = valid.unsqueeze(-1).to(xy_um.dtype)  # (B, N, 1)
    centre = (xy_um * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp(min=1)  # (B, 1, 2)
    rel = xy_um - centre  # (B, N, 2)
    wavelengths = torch.logspace(
        math.log10(cfg.pos_min_um), math.log10(cfg.pos_max_um), cfg.pos_freqs, device=xy_um.device, dtype=xy_um.dtype
    )
    angles = 2 * math.pi * rel.unsqueeze(-1) / wavelengths  # (B, N, 2, F)
    enc = torch.cat([angles.sin(), angles.cos()], dim=-1)  # (B, N, 2, 2F)
    return enc.flatten(2) * w  # (B, N, 4F)


class SlideQFormer(nn.Module):
    """Learned queries + transformers' ``Blip2QFormerModel`` over a slide's patch features."""

    def __init__(self, cfg: QFormerConfig):
        super().__init__()
        from transformers import Blip2QFormerConfig, Blip2QFormerModel

        self.cfg = cfg
        qcfg = Blip2QFormerConfig(
            hidden_size=cfg.hidden_size,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            intermediate_size=cfg.intermediate_size,
            hidden_dropout_prob=cfg.dropout,
            attention_probs_dropout_prob=cfg.dropout,
            max_position_embeddings=cfg.max_text_tokens,
            cross_attention_frequency=cfg.cross_attention_frequency,
            encoder_hidden_size=cfg.feature_dim,
            use_qformer_text_input=True,  # text tokens get their own feed-forward, as in BLIP-2 (ITM, ITG)
        )
        self.qformer = Blip2QFormerModel(qcfg)
        self.qformer.set_attn_implementation("sdpa")  # fast path; eager only when maps are asked for
        self.query_tokens = nn.Parameter(torch.randn(1, cfg.num_queries, cfg.hidden_size) * 0.02)
        self.feature_norm = nn.LayerNorm(cfg.feature_dim)  # encoders differ in feature scale
        self.pos_proj = nn.Linear(4 * cfg.pos_freqs, cfg.feature_dim)

    @contextmanager
    def _eager(self):
        """Attention weights exist only with eager attention; sdpa silently returns none."""
        self.qformer.set_attn_implementation("eager")
        try:
            yield
        finally:
            self.qformer.set_attn_implementation("sdpa")

    def patch_tokens(self, features: torch.Tensor, xy_um: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """features (B, N, D), xy_um (B, N, 2), valid (B, N) -> the keys/values (B, N, D)."""
        if features.shape[-1] != self.cfg.feature_dim:
            raise ValueError(
                (
                    f"patch features have dimension {features.shape[-1]}; this Q-Former reads {self.cfg.feature_dim} "
                    "(features from another patch encoder?)"
                )
            )
        feats = self.feature_norm(features.float())  # (B, N, D)
        return feats + self.pos_proj(positional_encoding(xy_um.float(), valid, self.cfg))  # (B, N, D)

    def forward(
        self,
        features: torch.Tensor,
        xy_um: torch.Tensor,
        valid: torch.Tensor,
        text_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> QFormerOutput:
        """Queries (and optionally text tokens after them) through the Q-Former.

        features (B, N, D); xy_um (B, N, 2) patch positions in µm; valid (B, N) bool, False = padding.
        text_embeds (B, T, H): text tokens for a joint pass (ITM, ITG); they self-attend with the
        queries but never cross-attend the patches. attention_mask: (B, Q+T) padding mask or a
        (B, 1, Q+T, Q+T) additive mask (the ITG mask); default all visible.
        """
        if features.ndim != 3 or xy_um.shape[:2] != features.shape[:2] or valid.shape != features.shape[:2]:
            raise ValueError(
                (
                    f"expected features (B, N, D), xy_um (B, N, 2), valid (B, N); got {tuple(features.shape)}, "
                    f"{tuple(xy_um.shape)}, {tuple(valid.shape)}"
                )
            )
        b = features.shape[0]
        patches = self.patch_tokens(features, xy_um, valid)  # (B, N, D)
        queries = self.query_tokens.expand(b, -1, -1)  # (B, Q, H)
        q = queries.shape[1]
        tokens = (
            queries if text_embeds is None else torch.cat([queries, text_embeds.to(queries.dtype)], dim=1)
        )  # (B, Q+T, H)
        # A ready 4D additive mask over (queries, patches): transformers would build one with Q+T rows
        # from a 2D mask, which breaks cross-attention (only the Q query rows cross-attend).
        patch_mask = torch.zeros(b, 1, q, valid.shape[1], dtype=patches.dtype, device=patches.device)
        patch_mask = patch_mask.masked_fill(
            ~valid.bool()[:, None, None, :], torch.finfo(patches.dtype).min
        )  # (B, 1, Q, N)
        kwargs = dict(
            query_embeds=tokens,
            query_length=q,
            attention_mask=attention_mask,
            encoder_hidden_states=patches,
            encoder_attention_mask=patch_mask,
        )
        if output_attentions:
            with self._eager():
                out = self.qformer(**kwargs, output_attentions=True)
            cross = torch.stack(list(out.cross_attentions))  # (layers, B, heads, Q, N)
        else:
            out = self.qformer(**kwargs)
            cross = None
        hidden = out.last_hidden_state  # (B, Q+T, H)
        return QFormerOutput(
            queries=hidden[:, :q], text=hidden[:, q:] if text_embeds is not None else None, cross_attentions=cross
        )
