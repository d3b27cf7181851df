"""The BLIP-2 stage-1 objectives as PathAlign trains them: ITC, ITM with hard negatives, ITG's mask."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def max_query_similarity(slide_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """slide_emb (S, Q, E), text_emb (T, E), both L2-normalised -> (S, T): best query per pair."""
    return torch.einsum("sqe,te->sqt", slide_emb, text_emb).amax(dim=1)  # (S, T)


def itc_loss(sim: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Symmetric contrastive loss on scaled similarities sim (B, B).

    positives (B, B) bool: pairs that share a report (identical text) are all positives, so two
    slides with the same diagnosis are not pushed apart.
    """
    targets = positives.float()
    i2t = -(F.log_softmax(sim, dim=1) * targets / targets.sum(1, keepdim=True)).sum(1).mean()
    t2i = -(F.log_softmax(sim.t(), dim=1) * targets.t() / targets.t().sum(1, keepdim=True)).sum(1).mean()
    return (i2t + t2i) / 2


def sample_hard_negatives(
    sim: torch.Tensor, positives: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One negative per row, drawn with probability softmax(similarity) among non-positives (BLIP-2).

    sim (B, B) image-to-text. Returns (rows, picks) for the rows that have any negative at all:
    ``picks[k]`` is the negative column for row ``rows[k]``.
    """
    weights = torch.softmax(sim.detach().float(), dim=1).masked_fill(positives, 0.0)  # (B, B)
    rows = torch.nonzero(weights.sum(1) > 0).flatten()
    if len(rows) == 0:
        return rows, rows
    picks = torch.multinomial(weights[rows], 1, generator=generator).flatten()
    return rows, picks


def itg_attention_mask(num_queries: int, text_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """BLIP-2's multimodal causal mask as an additive (B, 1, Q+L, Q+L) tensor.

    Queries see each other only (never the text, or the text could be copied); each text token sees
    every query and the text tokens up to itself; padding tokens are never seen.
    """
    b, length = text_mask.shape
    n = num_queries + length
    device = text_mask.device
    allowed = torch.zeros(b, n, n, dtype=torch.bool, device=device)
    allowed[:, :num_queries, :num_queries] = True  # queries <-> queries
    allowed[:, num_queries:, :num_queries] = True  # text -> queries
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool, device=device))  # (L, L)
    allowed[:, num_queries:, num_queries:] = causal & text_mask.bool()[:, None, :]  # text -> earlier text
    allowed[:, num_queries:, num_queries:] |= torch.eye(
        length, dtype=torch.bool, device=device
    )  # padding rows see themselves: no empty softmax
    return torch.zeros(b, 1, n, n, dtype=dtype, device=device).masked_fill(~allowed[:, None], torch.finfo(dtype).min)


def itg_loss(logits: torch.Tensor, input_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """Next-token loss: logits (B, L, V) at position i predict input_ids at i + 1; padding ignored."""
    target = input_ids[:, 1:].masked_fill(text_mask[:, 1:] == 0, -100)  # (B, L-1)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=-100)
