"""A generation model that drafts through its own Q-Former: one stage-2 model's drafting, another's all else.

Stage 2 tunes the Q-Former for the LM (BLIP-2). Tuned for facts (``TrainConfig.fact_weight``), the LM
writes better drafts, but the same Q-Former then moves what the text heatmaps, retrieval and zero-shot
read, and its LM readings (the claim checks' and chat's) grow overconfident. ``with_draft_branch`` takes
two stage-2 runs of one stage-1 model: everything from ``aligned``, plus the Q-Former and projection of
``drafter`` as the drafting branch (``PathAlignConfig.draft_qformer``). Drafts read ``drafter``'s
queries; maps, retrieval, zero-shot, claim checks and chat read ``aligned``'s, bit for bit.
"""

from __future__ import annotations

import dataclasses

import torch

from napari_pathalign.models.pathalign import PathAlign
from napari_pathalign.models.weights import weights_hash


def with_draft_branch(aligned: PathAlign, drafter: PathAlign) -> PathAlign:
    """``aligned`` with ``drafter``'s Q-Former and projection into the LM as its drafting branch.

    Weights only: the caller carries ``aligned``'s checkpoint record (``checkpoint_meta['extra']``, its
    ``ontology.json``) into the merged model's ``save`` when it needs them."""
    for name, m in (("aligned", aligned), ("drafter", drafter)):
        if m.lm is None:
            raise ValueError(f"the {name} model has no language model; both must be PathAlign-G (stage 2) models")
    a, d = aligned.cfg, drafter.cfg
    if (a.qformer, a.patch_encoder, a.patch_encoder_hash) != (d.qformer, d.patch_encoder, d.patch_encoder_hash):
        raise ValueError(
            "the two models differ in their Q-Former or patch encoder; take both from stage-2 runs of one stage-1 model"
        )
    if weights_hash(aligned.lm.path) != weights_hash(drafter.lm.path):
        raise ValueError(f"the models read different LMs ({aligned.lm.path} and {drafter.lm.path}); use one LM")
    merged = PathAlign(dataclasses.replace(a, draft_qformer=True))
    with torch.no_grad():
        keys = merged.load_state_dict(aligned.state_dict(), strict=False)
        if keys.unexpected_keys or any(not k.startswith("draft_") for k in keys.missing_keys):
            raise ValueError(f"the aligned model does not fit: {keys}")  # only the drafting branch is new
        branch = drafter.draft_qformer is not None
        merged.draft_qformer.load_state_dict((drafter.draft_qformer if branch else drafter.qformer).state_dict())
        merged.draft_proj.load_state_dict((drafter.draft_proj if branch else drafter.lm_proj).state_dict())
    return merged.to(aligned.device).eval()
