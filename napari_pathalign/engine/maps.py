"""Maps over a prepared ``SlideAnalysis``: where the queries look, where a text matches, what a similarity used.

- ``attention_heatmap``: where the Q-Former's queries look (one layer/head/query, or reduced over
  them), or the queries weighted by their similarity to a text (``text=``), which is the readable
  one: the mean of all 32 queries mixes queries that encode different things.
- ``text_heatmap``: how much better a phrase fits each patch's neighbourhood than other tissue
  phrases do (see ``engine/regions.py`` for why neighbourhoods).
- ``similarity_attribution``: gradient x input of the slide-text similarity through the Q-Former.
"""

from __future__ import annotations

import numpy as np

from napari_pathalign.core.heatmap import Heatmap
from napari_pathalign.engine.text import check_text
from napari_pathalign.engine.zero_shot import load_class_sets, max_over_queries, softmax

CONTRASTS = ("centred", "softmax", "raw")  # text_heatmap's modes


def attention_heatmap(
    analysis,
    layer: int | None = None,
    head: int | None = None,
    query: int | None = None,
    reduce: str = "mean",
    text: str | None = None,
) -> Heatmap:
    """The generation model's cross-attention on the patches; None aggregates over that axis.

    ``reduce``: 'mean' or 'max' over the axes left as None. ``text``: instead of one query or a
    plain reduction, weight the queries by softmax(temperature x similarity to the text): the
    queries that carry what the text says dominate the map ('attention-text-weighted').
    """
    analysis.need_ready()
    if reduce not in ("mean", "max"):
        raise ValueError(f"reduce {reduce!r}; expected 'mean' or 'max'")
    a = analysis.cross_attention  # (L, H, Q, N)
    picks = []
    for name, value, size in (("layer", layer, a.shape[0]), ("head", head, a.shape[1]), ("query", query, a.shape[2])):
        if value is not None and not 0 <= int(value) < size:
            raise ValueError(
                f"{name} {value!r} out of range; this model has {size} ({name} 0-{size - 1}, or None for all)"
            )
        picks.append(slice(None) if value is None else slice(int(value), int(value) + 1))
    sel = a[picks[0], picks[1]]  # (l, h, Q, N)
    params = {"layer": layer, "head": head, "query": query, "reduce": reduce}
    if text is not None:
        if query is not None:
            raise ValueError("pass either query= (one query) or text= (queries weighted by a text), not both")
        m = analysis.models["generation"]
        sims = analysis.embedding("generation").embedding @ analysis.text_embedding(text, "generation")  # (Q,)
        w = softmax(float(m.scale().detach()) * sims)  # (Q,)
        per_query = sel.mean(axis=(0, 1)) if reduce == "mean" else sel.max(axis=(0, 1))  # (Q, N)
        values = w @ per_query  # (N,)
        return analysis.heatmap(
            values,
            "attention-text-weighted",
            f"attention, queries weighted by '{text}'",
            text=text,
            query_weights=w.round(4).tolist(),
            **params,
        )
    sel = sel[:, :, picks[2]]
    values = sel.mean(axis=(0, 1, 2)) if reduce == "mean" else sel.max(axis=(0, 1, 2))  # (N,)
    where = ", ".join(
        f"{k} {'all' if v is None else v}" for k, v in (("layer", layer), ("head", head), ("query", query))
    )
    return analysis.heatmap(values, "attention", f"attention ({where}; {reduce})", **params)


def query_heatmaps(analysis) -> list[Heatmap]:
    """One map per query (mean over layers and heads): the gallery of the attention explorer."""
    return [attention_heatmap(analysis, query=q) for q in range(analysis.attention_shape[2])]


def text_heatmap(analysis, text: str, contrast: str = "centred") -> Heatmap:
    """Where on the slide ``text`` matches: one value per patch from its neighbourhood's embedding.

    ``contrast``:
    - 'centred' (default): cosine similarity to the text minus the mean similarity to a
      background vocabulary of tissue phrases (the shipped class prompts, less the text's own
      class). A patch's similarity to every text moves together; this removes that shared part.
    - 'softmax': probability of the text against the vocabulary at the model's temperature
      (sharper for tumour, worse for tissues whose synonyms sit in the vocabulary).
    - 'raw': the cosine similarity itself.
    docs/workspace.md gives the localisation figures of all three on held-out slides.
    """
    analysis.need_ready()
    text = check_text(text)
    if contrast not in CONTRASTS:
        raise ValueError(f"contrast {contrast!r}; expected one of {CONTRASTS}")
    t = analysis.text_embedding(text, "generation")[None]  # (1, E)
    common = dict(text=text, model="generation", radius=analysis.region_radius, contrast=contrast)
    if contrast == "raw":
        return analysis.heatmap(analysis.neighbourhood_similarity(t)[:, 0], "text", f"similarity to '{text}'", **common)
    vocab = background_vocabulary(text)
    sims = analysis.neighbourhood_similarity(
        np.concatenate([t, analysis.text_embeddings(vocab, "generation")])
    )  # (N, 1 + V)
    if contrast == "centred":
        values = sims[:, 0] - sims[:, 1:].mean(1)
        label = f"similarity to '{text}' minus tissue-phrase mean"
    else:
        values = softmax(float(analysis.models["generation"].scale().detach()) * sims, axis=1)[:, 0]
        label = f"P('{text}' vs {len(vocab)} tissue phrases)"
    return analysis.heatmap(values, "text", label, vocabulary=vocab, **common)


def similarity_attribution(analysis, texts: list[str], model: str = "retrieval") -> list[Heatmap]:
    """What the slide-text similarity used: per patch, gradient x input of the model's similarity
    (max over queries) to each text, through its Q-Former. Positive: the patch raises the
    similarity; removing the top patches lowers it most (the deletion test checks this).
    One forward pass for all texts, one backward pass each."""
    import torch

    analysis.need_ready()
    texts = [check_text(t) for t in texts]
    if not texts:
        return []
    m = analysis.models[model]
    batch = m.make_batch(analysis.features)
    n = len(analysis.features.xy_level0)
    t = torch.from_numpy(analysis.text_embeddings(texts, model)).to(m.device)  # (T, E)
    with torch.enable_grad():
        x = batch.features.detach().clone().requires_grad_(True)  # (1, N, D)
        emb = m.slide_embed(m.qformer(x, batch.xy_um, batch.valid).queries)[0]  # (Q, E)
        sims = (emb @ t.T).max(0).values  # (T,)
        out = []
        for k, text in enumerate(texts):
            (grad,) = torch.autograd.grad(sims[k], x, retain_graph=k < len(texts) - 1)
            values = (grad[0, :n] * x[0, :n].detach()).sum(-1).float().cpu().numpy()
            out.append(
                analysis.heatmap(
                    values,
                    "attribution",
                    f"contribution to the similarity with '{text}' (gradient x input)",
                    text=text,
                    model=model,
                )
            )
    return out


def text_score(analysis, text: str, keep: np.ndarray | None = None, model: str = "retrieval") -> float:
    """The slide's similarity to ``text``; with ``keep`` (patch indices) only those patches are encoded."""
    analysis.need_ready()
    t = analysis.text_embedding(text, model)
    if keep is None:
        emb = analysis.embedding(model)
    else:
        f = analysis.features
        keep = np.asarray(keep)
        emb = analysis.models[model].encode_slide(f.features[keep], f.xy_level0[keep], f.mpp)
    return float(max_over_queries(emb.embedding, t[None])[0])


def background_vocabulary(text: str) -> list[str]:
    """Tissue phrases a text competes with in a contrastive heatmap: every prompt of the shipped class
    sets, except the classes that hold the text itself (its synonyms must not compete with it)."""
    sets, _ = load_class_sets()
    low = text.strip().lower()
    vocab = set()
    for classes in sets.values():
        for name, prompts in classes.items():
            if low not in {p.lower() for p in prompts} and low != name.lower():
                vocab.update(prompts)
    for classes in sets.values():  # a phrase that is a class's prompt in one set excludes it in all
        for name, prompts in classes.items():
            if low in {p.lower() for p in prompts} or low == name.lower():
                vocab.difference_update(prompts)
    return sorted(vocab)
