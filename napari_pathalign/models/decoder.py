"""A frozen causal LM that reads the slide through a soft prompt (BLIP-2 stage 2).

The 32 query outputs, projected into the LM's embedding space, are prepended to the prompt's token
embeddings through ``inputs_embeds``. The LM never trains; only the projection (and optionally the
Q-Former) learns from its loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class GenerationConfig:
    """How a draft is decoded."""

    max_new_tokens: int = 96  # hard stop
    num_beams: int = 1  # > 1: beam search
    top_p: float | None = None  # set (e.g. 0.9): nucleus sampling instead of greedy/beam
    temperature: float = 1.0  # sampling temperature (top_p only)
    repetition_penalty: float = 1.0  # > 1 discourages repeats
    seed: int = 0  # sampling seed


def token_weights(offsets: list[tuple[int, int]], spans: list[tuple[int, int]], weight: float) -> list[float]:
    """``weight`` for each token (character ``offsets``) that overlaps a span, 1.0 for the others."""
    return [weight if any(s < e_tok and s_tok < e for s, e in spans) else 1.0 for s_tok, e_tok in offsets]


class FrozenLM(nn.Module):
    """Any transformers causal LM from a local folder, frozen, with its tokenizer."""

    def __init__(self, path: str | Path):
        super().__init__()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(
                (
                    f"language model {path}: not a transformers model folder (no config.json); pass a local folder "
                    "holding a causal LM and its tokenizer"
                )
            )
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(
            self.path, local_files_only=True, dtype=torch.float32
        )  # shipped weights may be float16
        self.model.requires_grad_(False)
        self.model.eval()
        if self.tokenizer.eos_token_id is None:
            raise ValueError(f"language model {path}: its tokenizer has no EOS token, so generation could never stop")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.dim = self.model.get_input_embeddings().embedding_dim

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()  # frozen: no dropout either
        return self

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids)

    def _tokens(self, texts: list[str]) -> list[list[int]]:
        return [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]

    def loss(
        self,
        soft: torch.Tensor,
        prompts: list[str],
        targets: list[str],
        max_tokens: int = 256,
        emphasis: list[list[tuple[int, int]]] | None = None,
        weight: float = 1.0,
    ) -> torch.Tensor:
        """LM loss of ``targets`` (then EOS) after the soft prompt (B, Q, dim) and text prompt.

        ``emphasis``: per target, character spans whose tokens count ``weight`` times as much
        (``train/fact_spans.py``); the loss is then the weighted mean over the target tokens."""
        device = soft.device
        rows, labels, weights = [], [], []
        # " target" after a prompt: tokenised as it reads in running text ("diagnosis: Lymph")
        spaced = [t if (not p or t[:1].isspace()) else " " + t for p, t in zip(prompts, targets)]
        weighted = emphasis is not None and weight != 1.0
        # the targets tokenised once; with their character offsets only when weighted (a slow tokenizer has none)
        enc = [self.tokenizer(t, add_special_tokens=False, return_offsets_mapping=weighted) for t in spaced]
        eos = [self.tokenizer.eos_token_id]
        for k, (p, tok) in enumerate(zip(self._tokens(prompts), enc)):
            t = (tok["input_ids"] + eos)[: max(1, max_tokens - len(p))]
            rows.append(p + t)
            labels.append([-100] * len(p) + t)
            if weighted:
                shift = len(spaced[k]) - len(targets[k])  # the space put before the target
                spans = [(s + shift, e + shift) for s, e in emphasis[k]]
                w = token_weights(list(tok["offset_mapping"]), spans, weight) + [1.0]  # EOS
                weights.append([0.0] * len(p) + w[: len(t)])
        length = max(map(len, rows))
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([r + [pad] * (length - len(r)) for r in rows], device=device)  # (B, L)
        lab = torch.tensor([r + [-100] * (length - len(r)) for r in labels], device=device)  # (B, L)
        mask = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows], device=device)  # (B, L)
        b, q = soft.shape[:2]
        embeds = torch.cat([soft.to(self._embed(ids).dtype), self._embed(ids)], dim=1)  # (B, Q+L, dim)
        full_mask = torch.cat([torch.ones(b, q, dtype=mask.dtype, device=device), mask], dim=1)  # (B, Q+L)
        full_labels = torch.cat([torch.full((b, q), -100, device=device), lab], dim=1)  # (B, Q+L)
        if not weighted:
            return self.model(inputs_embeds=embeds, attention_mask=full_mask, labels=full_labels).loss
        logits = self.model(inputs_embeds=embeds, attention_mask=full_mask).logits[:, q - 1 : -1].float()  # (B, L, V)
        w = torch.tensor([r + [0.0] * (length - len(r)) for r in weights], device=device)  # (B, L)
        ce = F.cross_entropy(logits.transpose(1, 2), lab, ignore_index=-100, reduction="none")  # (B, L)
        return (ce * w).sum() / w.sum().clamp(min=1e-6)

    @torch.no_grad()
    def continuation_logprobs(self, soft: torch.Tensor, prefix: str, continuations: list[str]) -> list[float]:
        """Log-probability of each continuation (its tokens summed) after the soft prompt (1, Q, dim) and ``prefix``.

        One padded forward pass for all of them; the continuation is read as running text after
        the prefix (a space between them), as ``loss`` trains it.
        """
        if not continuations:
            return []
        device = soft.device
        p = self._tokens([prefix])[0] if prefix else []
        conts = self._tokens([c if (not prefix or c[:1].isspace()) else " " + c for c in continuations])
        rows = [p + c for c in conts]
        length = max(map(len, rows))
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([r + [pad] * (length - len(r)) for r in rows], device=device)  # (C, L)
        mask = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows], device=device)
        n, q = len(rows), soft.shape[1]
        embeds = torch.cat(
            [soft.expand(n, -1, -1).to(self._embed(ids).dtype), self._embed(ids)], dim=1
        )  # (C, Q+L, dim)
        full_mask = torch.cat([torch.ones(n, q, dtype=mask.dtype, device=device), mask], dim=1)
        logp = torch.log_softmax(
            self.model(inputs_embeds=embeds, attention_mask=full_mask).logits.float(), dim=-1
        )  # (C, Q+L, V)
        out = []
        for k, c in enumerate(conts):
            pos = torch.arange(
                q + len(p) - 1, q + len(p) + len(c) - 1, device=device
            )  # the logits that predict each continuation token
            out.append(float(logp[k, pos, torch.tensor(c, device=device)].sum()))
        return out

    @torch.no_grad()
    def generate(
        self,
        soft: torch.Tensor,
        prompt: str,
        cfg: GenerationConfig = GenerationConfig(),
        streamer=None,
        stopping_criteria=None,
    ) -> list[str]:
        """Drafts for a batch of soft prompts (B, Q, dim) after the same text prompt.

        ``streamer`` (a transformers streamer) receives tokens as they are decoded (batch of one);
        ``stopping_criteria`` can end decoding early (Stop in the dock).
        """
        device = soft.device
        b = soft.shape[0]
        ids = torch.tensor([self._tokens([prompt])[0]] * b, device=device, dtype=torch.long)  # (B, P)
        embeds = torch.cat([soft.to(self._embed(ids).dtype), self._embed(ids)], dim=1)  # (B, Q+P, dim)
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=device)
        kwargs = dict(
            max_new_tokens=cfg.max_new_tokens,
            num_beams=cfg.num_beams,
            repetition_penalty=cfg.repetition_penalty,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if cfg.top_p is not None:
            torch.manual_seed(cfg.seed)
            kwargs.update(do_sample=True, top_p=cfg.top_p, temperature=cfg.temperature)
        else:
            kwargs.update(do_sample=False)
        if streamer is not None:
            kwargs["streamer"] = streamer
        if stopping_criteria is not None:
            kwargs["stopping_criteria"] = stopping_criteria
        out = self.model.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)  # (B, new) for decoder-only
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in out]
