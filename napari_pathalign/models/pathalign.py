"""PathAlign: BLIP-2 on whole slides (Q-Former slide encoder + text tower + optional frozen LM).

PathAlign-R: 1 query, ITC only; the slide embedding is that query, projected and normalised.
PathAlign-G: 32 queries, ITC + ITM + ITG in stage 1, then the LM loss through a projection into a
frozen causal LM in stage 2 (``losses=["lm"]``). Retrieval similarity is the max over queries.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_pathalign.models.decoder import FrozenLM, GenerationConfig
from napari_pathalign.models.losses import (
    itc_loss,
    itg_attention_mask,
    itg_loss,
    max_query_similarity,
    sample_hard_negatives,
)
from napari_pathalign.models.qformer import QFormerConfig, SlideQFormer
from napari_pathalign.models.text_tower import DEFAULT_TEXT_TOWER, TextTower

LOSSES = ("itc", "itm", "itg", "lm")


@dataclass
class PathAlignConfig:
    """Everything that defines a PathAlign model; saved as config.json beside its weights."""

    qformer: QFormerConfig = field(default_factory=QFormerConfig)
    embed_dim: int = 256  # shared image-text space of ITC and retrieval
    text_tower: str = DEFAULT_TEXT_TOWER  # 'minilm' (shipped with a dependency) or a local folder
    text_trainable_layers: int = 0  # top text-tower layers that train (0: frozen; then it is not saved)
    lm: str | None = None  # local folder of the frozen causal LM (generation); None: retrieval only
    # drafting reads its own Q-Former and projection into the LM (models/draft_branch.py), so that tuning the
    # drafts moves neither what the maps, retrieval and zero-shot read nor the LM readings that check claims and
    # answer chat; False: one Q-Former for all, as in BLIP-2
    draft_qformer: bool = False
    losses: list[str] = field(default_factory=lambda: ["itc", "itm", "itg"])  # terms trained
    patch_encoder: str = "embedded"  # name of the patch encoder whose features it reads
    patch_encoder_hash: str = ""  # that encoder's weights hash ('' = not checked)

    @classmethod
    def from_dict(cls, d: dict) -> PathAlignConfig:
        d = dict(d)
        unknown = set(d) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(
                f"unknown PathAlign config fields {sorted(unknown)}; expected {sorted(cls.__dataclass_fields__)}"
            )
        q = d.pop("qformer", {})
        unknown_q = set(q) - set(QFormerConfig.__dataclass_fields__)
        if unknown_q:
            raise ValueError(
                (
                    f"unknown qformer config fields {sorted(unknown_q)}; expected "
                    f"{sorted(QFormerConfig.__dataclass_fields__)}"
                )
            )
        cfg = cls(qformer=QFormerConfig(**q), **d)
        bad = set(cfg.losses) - set(LOSSES)
        if bad or not cfg.losses:
            raise ValueError(f"losses {cfg.losses!r}: expected a non-empty subset of {LOSSES}")
        if "lm" in cfg.losses and not cfg.lm:
            raise ValueError("the 'lm' loss needs a language model folder: set 'lm' in the model config")
        if cfg.draft_qformer and not cfg.lm:
            raise ValueError("draft_qformer feeds the language model: set 'lm' in the model config too")
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SlideBatch:
    """Patch features of several slides, padded to the largest patch count."""

    features: torch.Tensor  # (B, N, D) float32
    xy_um: torch.Tensor  # (B, N, 2) patch positions in µm
    valid: torch.Tensor  # (B, N) bool, False = padding

    def to(self, device) -> SlideBatch:
        return SlideBatch(self.features.to(device), self.xy_um.to(device), self.valid.to(device))

    def select(self, index: torch.Tensor) -> SlideBatch:
        return SlideBatch(self.features[index], self.xy_um[index], self.valid[index])


def slide_positions_um(xy_level0: np.ndarray, mpp: float | None) -> np.ndarray:
    """Level-0 pixel corners -> µm; the Q-Former needs physical positions."""
    if mpp is None or not mpp > 0:
        raise ValueError(
            (
                f"the slide has no microns-per-pixel (got mpp={mpp!r}); PathAlign places patches in µm: pass "
                "mpp=... (e.g. 0.25 for 40x, 0.5 for 20x)"
            )
        )
    return np.asarray(xy_level0, np.float32) * np.float32(mpp)


def collate_slides(slides: list[tuple[np.ndarray, np.ndarray, float | None]]) -> SlideBatch:
    """[(features (N_i, D), xy_level0 (N_i, 2), mpp)] -> one padded SlideBatch."""
    if not slides:
        raise ValueError("no slides to batch")
    n = max(len(f) for f, _, _ in slides)
    if n == 0:
        raise ValueError("a slide has no patch features (no tissue found?); nothing to encode")
    d = slides[0][0].shape[1]
    feats = torch.zeros(len(slides), n, d)
    xy = torch.zeros(len(slides), n, 2)
    valid = torch.zeros(len(slides), n, dtype=torch.bool)
    for i, (f, c, mpp) in enumerate(slides):
        if f.ndim != 2 or f.shape[1] != d or len(c) != len(f):
            raise ValueError(
                (
                    f"slide {i}: features {f.shape} and coordinates {np.shape(c)} do not match (expected (N, {d}) "
                    "and (N, 2))"
                )
            )
        feats[i, : len(f)] = torch.from_numpy(np.asarray(f, np.float32))
        xy[i, : len(f)] = torch.from_numpy(slide_positions_um(c, mpp))
        valid[i, : len(f)] = True
    return SlideBatch(feats, xy, valid)


@dataclass
class SlideEmbedding:
    """One slide as PathAlign sees it."""

    embedding: np.ndarray  # (Q, E) L2-normalised query embeddings (retrieval, zero-shot)
    queries: np.ndarray  # (Q, H) raw query outputs (the soft prompt of generation)
    n_patches: int  # patches it was computed from
    draft_queries: np.ndarray | None = None  # (Q, H) the drafting Q-Former's outputs, when it has one

    @property
    def vector(self) -> np.ndarray:
        """(E,) one normalised vector for a vector index: the mean of the query embeddings."""
        v = self.embedding.mean(0)
        return v / max(float(np.linalg.norm(v)), 1e-12)


class PathAlign(nn.Module):
    def __init__(self, cfg: PathAlignConfig):
        super().__init__()
        self.cfg = cfg
        q = cfg.qformer
        self.qformer = SlideQFormer(q)
        self.text = TextTower(cfg.text_tower, cfg.text_trainable_layers)
        self.vision_proj = nn.Linear(q.hidden_size, cfg.embed_dim)
        self.text_proj = nn.Linear(self.text.dim, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # learnable temperature
        self.itm_text_in = nn.Linear(self.text.dim, q.hidden_size)
        self.itm_head = nn.Linear(q.hidden_size, 2)
        self.itg_text_in = nn.Linear(self.text.dim, q.hidden_size)
        self.itg_head = nn.Linear(q.hidden_size, self.text.dim)  # tied to the text tower's word embeddings
        self.itg_bias = nn.Parameter(torch.zeros(self.text.word_embeddings.shape[0]))
        self.lm = FrozenLM(cfg.lm) if cfg.lm else None
        self.lm_proj = nn.Linear(q.hidden_size, self.lm.dim) if self.lm is not None else None
        drafts = cfg.draft_qformer and self.lm is not None
        self.draft_qformer = SlideQFormer(q) if drafts else None
        self.draft_proj = nn.Linear(q.hidden_size, self.lm.dim) if drafts else None

    # ----------------------------------------------------------------- tensors in, tensors out
    @property
    def device(self) -> torch.device:
        return self.vision_proj.weight.device

    def slide_embed(self, queries: torch.Tensor) -> torch.Tensor:
        """queries (B, Q, H) -> (B, Q, E) normalised."""
        return F.normalize(self.vision_proj(queries), dim=-1)

    def text_embed(self, texts: list[str]):
        """-> normalised (T, E), token states (T, L, dim) and the tokenised batch."""
        tok = self.text.tokenize(texts, self.cfg.qformer.max_text_tokens)
        states, pooled = self.text(tok)
        return F.normalize(self.text_proj(pooled), dim=-1), states, tok

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(100.0)).exp()

    def itm_logits(self, batch: SlideBatch, states: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """Match logits (B, 2) of slide i with text i: queries and text self-attend jointly."""
        q = self.cfg.qformer.num_queries
        mask = torch.cat(
            [torch.ones(len(text_mask), q, dtype=text_mask.dtype, device=text_mask.device), text_mask], dim=1
        )  # (B, Q+L)
        out = self.qformer(
            batch.features, batch.xy_um, batch.valid, text_embeds=self.itm_text_in(states), attention_mask=mask
        )
        return self.itm_head(out.queries).mean(1)  # (B, 2)

    def losses(
        self,
        batch: SlideBatch,
        texts: list[str],
        prompts: list[str] | None = None,
        generator: torch.Generator | None = None,
        groups: list | None = None,
        emphasis: list | None = None,
        emphasis_weight: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        """The configured training terms for slides paired with ``texts`` (one each).

        ``groups``: an id per row; rows of one group (the same slide with two reports) are
        positives of each other, like identical texts, never negatives. ``emphasis``: per text, the
        character spans whose tokens count ``emphasis_weight`` times in the LM loss (stage 2).
        """
        if len(texts) != batch.features.shape[0]:
            raise ValueError(f"{batch.features.shape[0]} slides but {len(texts)} texts; pass one text per slide")
        out: dict[str, torch.Tensor] = {}
        wanted = set(self.cfg.losses)
        if wanted & {"itc", "itm", "itg"} or self.draft_qformer is None:
            queries = self.qformer(batch.features, batch.xy_um, batch.valid).queries  # (B, Q, H)
        if wanted & {"itc", "itm", "itg"}:
            text_emb, states, tok = self.text_embed(texts)
            ids = groups if groups is not None else texts
            same = torch.tensor(
                [[a == b or ga == gb for b, gb in zip(texts, ids)] for a, ga in zip(texts, ids)], device=self.device
            )  # (B, B)
            sim = max_query_similarity(self.slide_embed(queries), text_emb) * self.scale()  # (B, B)
        if "itc" in wanted:
            out["itc"] = itc_loss(sim, same)
        if "itm" in wanted:
            out["itm"] = self._itm_loss(batch, states, tok.attention_mask, sim, same, generator)
        if "itg" in wanted:
            emb = self.itg_text_in(self.text.embed_tokens(tok))  # (B, L, H)
            mask = itg_attention_mask(self.cfg.qformer.num_queries, tok.attention_mask, emb.dtype)
            hidden = self.qformer(
                batch.features, batch.xy_um, batch.valid, text_embeds=emb, attention_mask=mask
            ).text  # (B, L, H)
            vocab = getattr(self, "itg_vocab", None)
            if vocab is None:
                logits = self.itg_head(hidden) @ self.text.word_embeddings.t() + self.itg_bias  # (B, L, V)
                out["itg"] = itg_loss(logits, tok.input_ids, tok.attention_mask)
            else:  # softmax over the corpus vocabulary only (see restrict_itg_vocab)
                logits = (
                    self.itg_head(hidden) @ self.text.word_embeddings[vocab].t() + self.itg_bias[vocab]
                )  # (B, L, V')
                out["itg"] = itg_loss(logits, self.itg_remap[tok.input_ids], tok.attention_mask)
        if "lm" in wanted:
            if self.lm is None:
                raise ValueError(
                    "the 'lm' loss needs a language model; this PathAlign has none (set 'lm' in its config)"
                )
            proj = self.lm_proj
            if self.draft_qformer is not None:  # stage 2 of a drafting branch trains only the branch
                queries, proj = self.draft_qformer(batch.features, batch.xy_um, batch.valid).queries, self.draft_proj
            out["lm"] = self.lm.loss(
                proj(queries), prompts or [""] * len(texts), texts, emphasis=emphasis, weight=emphasis_weight
            )
        return out

    def restrict_itg_vocab(self, texts: list[str]) -> int:
        """Compute ITG's softmax over the word pieces that occur in ``texts`` (the training corpus).

        The tied head scores 30k word pieces per token otherwise, most of the cost of a CPU step;
        a piece that never occurs is never a target. ITG is a training-only objective here (drafts
        come from the LM), so this changes no output. Returns the vocabulary size used.
        """
        ids = set()
        for i in range(0, len(texts), 256):
            tok = self.text.tokenize(texts[i : i + 256], self.cfg.qformer.max_text_tokens)
            ids |= set(tok.input_ids[tok.attention_mask.bool()].tolist())
        self.itg_vocab = torch.tensor(sorted(ids), device=self.device)
        self.itg_remap = torch.zeros(
            self.itg_bias.shape[0], dtype=torch.long, device=self.device
        )  # word piece -> its row in the restricted softmax
        self.itg_remap[self.itg_vocab] = torch.arange(len(ids), device=self.device)
        return len(ids)

    def _itm_loss(self, batch, states, text_mask, sim, same, generator) -> torch.Tensor:
        """Positives plus one hard negative text per slide and one hard negative slide per text."""
        b = len(text_mask)
        rows_t, neg_t = sample_hard_negatives(sim, same, generator)  # slide row -> negative text
        rows_s, neg_s = sample_hard_negatives(sim.t(), same.t(), generator)  # text row -> negative slide
        idx = torch.arange(b, device=self.device)
        slide_idx = torch.cat([idx, rows_t, neg_s])
        text_idx = torch.cat([idx, neg_t, rows_s])
        labels = torch.cat([torch.ones(b), torch.zeros(len(rows_t) + len(rows_s))]).long().to(self.device)
        logits = self.itm_logits(batch.select(slide_idx), states[text_idx], text_mask[text_idx])  # (3B, 2)
        return F.cross_entropy(logits, labels)

    # ----------------------------------------------------------------- numpy in, results out
    def make_batch(self, features, xy_level0=None, mpp=None) -> SlideBatch:
        if hasattr(features, "features"):  # a SlideFeatures from the feature cache
            self.check_features(features)
            features, xy_level0, mpp = features.features, features.xy_level0, features.mpp if mpp is None else mpp
        if xy_level0 is None:
            raise ValueError("pass the patch coordinates xy_level0 (N, 2) with the features, or a SlideFeatures")
        return collate_slides([(np.asarray(features), np.asarray(xy_level0), mpp)]).to(self.device)

    def check_features(self, feats) -> None:
        """Refuse features from another patch encoder than the one this model was trained on."""
        enc, h = self.cfg.patch_encoder, self.cfg.patch_encoder_hash
        if feats.encoder not in ("", "unknown") and feats.encoder != enc:
            raise ValueError(
                (
                    f"features were computed with patch encoder {feats.encoder!r} but this model reads {enc!r}; "
                    f"re-embed the slide with --encoder {enc}"
                )
            )
        if h and feats.weights_hash not in ("", "unknown", h):
            raise ValueError(
                (
                    f"features come from {enc!r} weights {feats.weights_hash} but this model was trained on weights "
                    f"{h}; re-embed the slide with the model's encoder weights"
                )
            )

    @torch.no_grad()
    def encode_slide(self, features, xy_level0=None, mpp: float | None = None) -> SlideEmbedding:
        """Features (N, D) + level-0 corners (N, 2) + mpp (or one SlideFeatures) -> SlideEmbedding."""
        batch = self.make_batch(features, xy_level0, mpp)
        queries = self.qformer(batch.features, batch.xy_um, batch.valid).queries  # (1, Q, H)
        emb = self.slide_embed(queries)  # (1, Q, E)
        own = (
            None if self.draft_qformer is None else self.draft_qformer(batch.features, batch.xy_um, batch.valid).queries
        )
        return SlideEmbedding(
            emb[0].float().cpu().numpy(),
            queries[0].float().cpu().numpy(),
            int(batch.valid.sum()),
            None if own is None else own[0].float().cpu().numpy(),
        )

    def soft_prompt(self, slide: SlideEmbedding, drafting: bool = True) -> torch.Tensor:
        """The slide as the LM reads it, (1, Q, dim): for drafting (``generate``, the draft), the drafting
        branch's queries and projection when the model has one; for reading (``drafting=False``: the claim
        checks' and chat's LM readings), the shared Q-Former's queries and ``lm_proj``."""
        if self.lm is None:
            raise ValueError(
                (
                    "this PathAlign has no language model (a retrieval model, PathAlign-R); load a generation "
                    "model (PathAlign-G) to draft reports"
                )
            )
        if drafting and self.draft_qformer is not None:
            if slide.draft_queries is None:
                raise ValueError("this slide embedding has no drafting queries; compute it with this model")
            return self.draft_proj(torch.from_numpy(slide.draft_queries).to(self.device)[None])
        return self.lm_proj(torch.from_numpy(slide.queries).to(self.device)[None])

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        """(T, E) normalised text embeddings."""
        if isinstance(texts, str):
            raise ValueError("encode_text takes a list of strings; got one string")
        return self.text_embed(list(texts))[0].float().cpu().numpy()

    @staticmethod
    def similarity(slide: SlideEmbedding | list[SlideEmbedding], text_emb: np.ndarray) -> np.ndarray:
        """Cosine similarity, max over queries: (T,) for one slide, (S, T) for a list."""
        slides = [slide] if isinstance(slide, SlideEmbedding) else slide
        s = torch.from_numpy(np.stack([x.embedding for x in slides]))  # (S, Q, E)
        sim = max_query_similarity(s, torch.from_numpy(np.asarray(text_emb, np.float32))).numpy()  # (S, T)
        return sim[0] if isinstance(slide, SlideEmbedding) else sim

    @torch.no_grad()
    def itm_score(self, features, texts: list[str], xy_level0=None, mpp: float | None = None) -> np.ndarray:
        """Probability (T,) that each text matches the slide, from the ITM head."""
        batch = self.make_batch(features, xy_level0, mpp)
        _, states, tok = self.text_embed(list(texts))
        many = batch.select(torch.zeros(len(texts), dtype=torch.long, device=self.device))
        return torch.softmax(self.itm_logits(many, states, tok.attention_mask), -1)[:, 1].float().cpu().numpy()

    @torch.no_grad()
    def attention(self, features, xy_level0=None, mpp: float | None = None) -> np.ndarray:
        """Cross-attention of the queries on the patches: (layers, heads, Q, N)."""
        batch = self.make_batch(features, xy_level0, mpp)
        cross = self.qformer(batch.features, batch.xy_um, batch.valid, output_attentions=True).cross_attentions
        return cross[:, 0].float().cpu().numpy()

    @torch.no_grad()
    def generate(
        self, slide: SlideEmbedding, prompt: str = "Final diagnosis:", config: GenerationConfig = GenerationConfig()
    ) -> str:
        """A draft (report or answer) for one slide after ``prompt``, through the frozen LM."""
        soft = self.soft_prompt(slide)  # first: it says why a model without an LM cannot draft
        return self.lm.generate(soft, prompt, config)[0]

    # ----------------------------------------------------------------- checkpoints
    @classmethod
    def load(cls, path: str | Path, device: str = "auto", lm: str | Path | None = None) -> PathAlign:
        """From a checkpoint folder (config.json + model.safetensors), or 'embedded'."""
        from napari_pathalign.models.checkpoint import load_pathalign

        return load_pathalign(path, device=device, lm=lm, config_from_dict=PathAlignConfig.from_dict, build=cls)

    def save(
        self,
        path: str | Path,
        extra: dict | None = None,
        half: bool = False,
        bundle_lm: bool = False,
        files: dict[str, str] | None = None,
    ) -> Path:
        from napari_pathalign.models.checkpoint import save_pathalign

        return save_pathalign(self, path, extra, half, bundle_lm, files)
