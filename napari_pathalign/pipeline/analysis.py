"""``SlideAnalysis``: everything the models say about one open slide, computed once, shared by docks.

``iter_prepare()`` is a generator of ``Progress`` (a napari ``thread_worker`` shows it and can
cancel between steps): it loads the models, embeds the patches (feature cache on disk), encodes the
slide with the retrieval and the generation model, embeds each patch's neighbourhood for text
heatmaps and keeps the generation model's cross-attention. After that every map is cheap:

- ``attention_heatmap``: where the Q-Former's queries look (one layer/head/query, or reduced over
  them), or the queries weighted by their similarity to a text (``text=``), which is the readable
  one: the mean of all 32 queries mixes queries that encode different things.
- ``text_heatmap``: how much better a phrase fits each patch's neighbourhood than other tissue
  phrases do (see ``pipeline/regions.py`` for why neighbourhoods, and ``text_heatmap``).
- ``zero_shot``: class probabilities from prompt ensembles with the model's temperature, and a
  per-patch probability map per class.
- ``region(polygon)``: the same analysis over the patches inside a polygon (features reused).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from napari_pathalign.pipeline.features import GridConfig
from napari_pathalign.pipeline.heatmap import Heatmap, patch_at
from napari_pathalign.pipeline.zero_shot import ZeroShot, check_classes, class_embeddings, load_class_sets, max_over_queries, softmax

ROLES = ("retrieval", "generation")
CONTRASTS = ("centred", "softmax", "raw")  # text_heatmap's modes


@dataclass
class Progress:
    """One step of ``iter_prepare``: what runs, and how far along it is."""

    stage: str  # 'models', 'features', 'slide embedding', 'regions', 'attention', 'ready'
    done: int  # units done in this stage
    total: int  # units in this stage
    message: str = ""  # for the status line

    def __str__(self) -> str:
        return self.message or f"{self.stage}: {self.done}/{self.total}"


def default_cache_dir() -> Path:
    """The user's cache folder for feature files (platformdirs: ~/.cache/napari-pathalign/features on Linux)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("napari-pathalign")) / "features"


class SlideAnalysis:
    """One slide through one patch encoder and two PathAlign models (retrieval, generation)."""

    def __init__(self, slide, encoder="embedded", model="embedded", retrieval_model="embedded-r", grid: GridConfig | None = None, cache_dir: str | Path | None = None, device: str = "auto", encoder_weights: str | Path | None = None, region_radius: int = 1):
        """``encoder``: a registered name or a loaded ``PatchEncoder``; ``model``/``retrieval_model``: 'embedded',
        'embedded-r', a checkpoint folder or a loaded ``PathAlign`` (``retrieval_model=None``: ``model`` does both).
        ``grid``: None takes the grid the model was trained with (else ``GridConfig()``); ``cache_dir``: None is the
        user's cache folder. ``region_radius``: lattice cells around a patch that form its neighbourhood."""
        if getattr(slide, "mpp", None) is None:
            source = getattr(slide, "mpp_source", "")
            raise ValueError(f"{getattr(slide, 'path', 'the slide')} has no microns-per-pixel metadata ({source}); PathAlign places patches in µm, so it cannot analyse this slide. Re-export it with its resolution (e.g. 0.5 µm/px for 20x)")
        self.slide = slide
        self._encoder, self._encoder_weights = encoder, encoder_weights
        self._model_specs = {"generation": model, "retrieval": retrieval_model if retrieval_model is not None else model}
        self.grid = grid
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.device = device
        self.region_radius = int(region_radius)
        self.models: dict = {}
        self.encoder = None
        self.features = None  # SlideFeatures after iter_prepare
        self._embeddings: dict = {}  # role -> SlideEmbedding
        self._attention: np.ndarray | None = None  # (cross layers, heads, Q, N) of the generation model
        self._regions: np.ndarray | None = None  # (N, Q, E) float16 neighbourhood embeddings of the generation model
        self._text_cache: dict = {}  # (role, text) -> (E,) normalised
        self.statements: list = []  # sentences of the drafts and answers made on this analysis (statements_at)
        self._in_distribution = None  # cached InDistribution of the slide's patch features
        self._default_zero_shot = None  # zero_shot() with the default classes, for statements_at
        self._claim_checker = None  # ClaimChecker: the slide's measured fractions, computed once (support)
        self.polygon_xy_level0: np.ndarray | None = None  # set on a region()
        self.parent: SlideAnalysis | None = None

    # ------------------------------------------------------------------ preparation
    @property
    def ready(self) -> bool:
        return self.features is not None and bool(self._embeddings)

    def _load(self, spec, models):
        from napari_pathalign.models.pathalign import PathAlign

        if not isinstance(spec, (str, Path)):
            return spec
        key = str(spec)
        if key not in models:
            models[key] = PathAlign.load(spec, device=self.device)
        return models[key]

    def _check_encoder(self) -> None:
        for role, m in self.models.items():
            if m.cfg.patch_encoder != self.encoder.name:
                raise ValueError(f"the {role} model reads features of patch encoder {m.cfg.patch_encoder!r}, but {self.encoder.name!r} is selected; pick {m.cfg.patch_encoder!r} as the encoder (with the weights the model was trained on)")
            if m.cfg.patch_encoder_hash and self.encoder.weights_hash != m.cfg.patch_encoder_hash:
                raise ValueError(f"the {role} model was trained on {m.cfg.patch_encoder!r} weights {m.cfg.patch_encoder_hash}, but the selected weights hash to {self.encoder.weights_hash}; select the weights the model was trained on")

    def _grid(self) -> GridConfig:
        if self.grid is not None:
            return self.grid
        trained = getattr(self.models["generation"], "checkpoint_meta", {}).get("extra", {}).get("train_config", {})
        return GridConfig(**trained.get("grid", {}))

    def iter_prepare(self) -> Iterator[Progress]:
        """Generator of ``Progress``; afterwards ``features``, ``embedding()`` and every heatmap are ready."""
        from napari_pathalign.models.encoders import load_patch_encoder
        from napari_pathalign.pipeline.features import iter_embed_slide
        from napari_pathalign.pipeline.generators import mapped
        from napari_pathalign.pipeline.regions import iter_region_embeddings

        yield Progress("models", 0, 3, "Loading the models ...")
        loaded: dict = {}
        self.models = {role: self._load(self._model_specs[role], loaded) for role in ("generation", "retrieval")}
        yield Progress("models", 2, 3, "Loading the patch encoder ...")
        self.encoder = self._encoder if not isinstance(self._encoder, str) else load_patch_encoder(self._encoder, self._encoder_weights, self.device)
        self._check_encoder()
        yield Progress("models", 3, 3, f"Models ready on {self.device_info}")
        self.grid = self._grid()
        self.features = yield from mapped(iter_embed_slide(self.slide, self.encoder, self.grid, self.cache_dir), lambda p: Progress("features", *p, f"Embedding patches: {p[0]}/{p[1]}"))
        if len(self.features.features) == 0:
            self.features = None
            raise ValueError(f"no tissue found on {self.slide.path.name}: no patch has at least {self.grid.min_tissue:.0%} tissue; nothing to analyse (lower min_tissue or check the slide)")
        yield from self._encode()
        n = len(self.features.features)
        f = self.features
        regions = yield from mapped(iter_region_embeddings(self.models["generation"], f.features, f.xy_level0, f.mpp, f.size_level0, self.region_radius), lambda p: Progress("regions", *p, f"Embedding patch neighbourhoods: {p[0]}/{p[1]}"))
        self._regions = regions.astype(np.float16)  # 10,240 patches x 32 queries: 168 MB, not 335
        yield Progress("ready", n, n, f"Ready: {n} patches")

    def _encode(self) -> Iterator[Progress]:
        """Slide embeddings of both models and the generation model's cross-attention."""
        f = self.features
        by_model: dict = {}  # one model in both roles encodes once
        for k, role in enumerate(ROLES):
            yield Progress("slide embedding", k, 2, f"Encoding the slide ({role} model) ...")
            m = self.models[role]
            if id(m) not in by_model:
                by_model[id(m)] = m.encode_slide(f)
            self._embeddings[role] = by_model[id(m)]
        yield Progress("attention", 0, 1, "Cross-attention of the queries ...")
        self._attention = self.models["generation"].attention(f)  # (layers, heads, Q, N)

    @property
    def device_info(self) -> str:
        """Where and in what precision the models run (shown in the dock)."""
        m = self.models.get("generation")
        dev = str(m.device) if m is not None else self.device
        enc = self.encoder
        enc_dtype = str(enc.dtype).replace("torch.", "") if enc is not None else "?"
        return f"{dev} (encoder {enc_dtype}, Q-Former float32)"

    def _need_ready(self) -> None:
        if not self.ready:
            raise RuntimeError("the analysis is not prepared yet: run iter_prepare() (the dock's Analyse) first")

    # ------------------------------------------------------------------ results
    def embedding(self, model: str = "retrieval"):
        """The slide's ``SlideEmbedding`` from the 'retrieval' or 'generation' model."""
        self._need_ready()
        if model not in ROLES:
            raise ValueError(f"model {model!r}; expected one of {ROLES}")
        return self._embeddings[model]

    def text_embedding(self, text: str, model: str = "retrieval") -> np.ndarray:
        """(E,) normalised embedding of one text (cached)."""
        text = _check_text(text)
        key = (model, text)
        if key not in self._text_cache:
            self._text_cache[key] = self.models[model].encode_text([text])[0]
        return self._text_cache[key]

    def _heatmap(self, values, kind: str, label: str, **params) -> Heatmap:
        f = self.features
        return Heatmap(values, f.xy_level0, f.size_level0, f.mpp, kind, label, "raw", params)

    @property
    def attention_shape(self) -> tuple[int, int, int]:
        """(cross-attention layers, heads, queries) of the generation model."""
        self._need_ready()
        return tuple(self._attention.shape[:3])

    def attention_heatmap(self, layer: int | None = None, head: int | None = None, query: int | None = None, reduce: str = "mean", text: str | None = None) -> Heatmap:
        """The generation model's cross-attention on the patches; None aggregates over that axis.

        ``reduce``: 'mean' or 'max' over the axes left as None. ``text``: instead of one query or a
        plain reduction, weight the queries by softmax(temperature x similarity to the text): the
        queries that carry what the text says dominate the map ('attention-text-weighted').
        """
        self._need_ready()
        if reduce not in ("mean", "max"):
            raise ValueError(f"reduce {reduce!r}; expected 'mean' or 'max'")
        a = self._attention  # (L, H, Q, N)
        picks = []
        for name, value, size in (("layer", layer, a.shape[0]), ("head", head, a.shape[1]), ("query", query, a.shape[2])):
            if value is not None and not 0 <= int(value) < size:
                raise ValueError(f"{name} {value!r} out of range; this model has {size} ({name} 0-{size - 1}, or None for all)")
            picks.append(slice(None) if value is None else slice(int(value), int(value) + 1))
        sel = a[picks[0], picks[1]]  # (l, h, Q, N)
        params = {"layer": layer, "head": head, "query": query, "reduce": reduce}
        if text is not None:
            if query is not None:
                raise ValueError("pass either query= (one query) or text= (queries weighted by a text), not both")
            m = self.models["generation"]
            sims = self.embedding("generation").embedding @ self.text_embedding(text, "generation")  # (Q,)
            w = softmax(float(m.scale().detach()) * sims)  # (Q,)
            per_query = sel.mean(axis=(0, 1)) if reduce == "mean" else sel.max(axis=(0, 1))  # (Q, N)
            values = w @ per_query  # (N,)
            return self._heatmap(values, "attention-text-weighted", f"attention, queries weighted by '{text}'", text=text, query_weights=w.round(4).tolist(), **params)
        sel = sel[:, :, picks[2]]
        values = sel.mean(axis=(0, 1, 2)) if reduce == "mean" else sel.max(axis=(0, 1, 2))  # (N,)
        where = ", ".join(f"{k} {'all' if v is None else v}" for k, v in (("layer", layer), ("head", head), ("query", query)))
        return self._heatmap(values, "attention", f"attention ({where}; {reduce})", **params)

    def query_heatmaps(self) -> list[Heatmap]:
        """One map per query (mean over layers and heads): the gallery of the attention explorer."""
        return [self.attention_heatmap(query=q) for q in range(self.attention_shape[2])]

    def _region_similarity(self, texts: np.ndarray) -> np.ndarray:
        """(N, T) cosine similarity of each patch's neighbourhood to normalised texts (T, E), max over queries."""
        out = np.empty((len(self._regions), len(texts)), np.float32)
        for start in range(0, len(out), 2048):  # float16 storage, float32 maths, bounded memory
            out[start : start + 2048] = max_over_queries(self._regions[start : start + 2048].astype(np.float32), texts)
        return out

    def text_heatmap(self, text: str, contrast: str = "centred") -> Heatmap:
        """Where on the slide ``text`` matches: one value per patch from its neighbourhood's embedding.

        ``contrast``:
        - 'centred' (default): cosine similarity to the text minus the mean similarity to a
          background vocabulary of tissue phrases (the shipped class prompts, less the text's own
          class). A patch's similarity to every text moves together; this removes that shared part.
        - 'softmax': probability of the text against the vocabulary at the model's temperature
          (sharper for tumour, worse for tissues whose synonyms sit in the vocabulary).
        - 'raw': the cosine similarity itself.
        The README gives the localisation figures of all three on held-out slides.
        """
        self._need_ready()
        text = _check_text(text)
        if contrast not in CONTRASTS:
            raise ValueError(f"contrast {contrast!r}; expected one of {CONTRASTS}")
        t = self.text_embedding(text, "generation")[None]  # (1, E)
        common = dict(text=text, model="generation", radius=self.region_radius, contrast=contrast)
        if contrast == "raw":
            return self._heatmap(self._region_similarity(t)[:, 0], "text", f"similarity to '{text}'", **common)
        vocab = background_vocabulary(text)
        sims = self._region_similarity(np.concatenate([t, self.text_embeddings(vocab, "generation")]))  # (N, 1 + V)
        if contrast == "centred":
            values = sims[:, 0] - sims[:, 1:].mean(1)
            label = f"similarity to '{text}' minus tissue-phrase mean"
        else:
            values = softmax(float(self.models["generation"].scale().detach()) * sims, axis=1)[:, 0]
            label = f"P('{text}' vs {len(vocab)} tissue phrases)"
        return self._heatmap(values, "text", label, vocabulary=vocab, **common)

    def similarity_attribution(self, texts: list[str], model: str = "retrieval") -> list[Heatmap]:
        """What the slide-text similarity used: per patch, gradient x input of the model's similarity
        (max over queries) to each text, through its Q-Former. Positive: the patch raises the
        similarity; removing the top patches lowers it most (the deletion test checks this).
        One forward pass for all texts, one backward pass each."""
        import torch

        self._need_ready()
        texts = [_check_text(t) for t in texts]
        if not texts:
            return []
        m = self.models[model]
        batch = m._batch(self.features)
        n = len(self.features.xy_level0)
        t = torch.from_numpy(self.text_embeddings(texts, model)).to(m.device)  # (T, E)
        with torch.enable_grad():
            x = batch.features.detach().clone().requires_grad_(True)  # (1, N, D)
            emb = m.slide_embed(m.qformer(x, batch.xy_um, batch.valid).queries)[0]  # (Q, E)
            sims = (emb @ t.T).max(0).values  # (T,)
            out = []
            for k, text in enumerate(texts):
                (grad,) = torch.autograd.grad(sims[k], x, retain_graph=k < len(texts) - 1)
                values = (grad[0, :n] * x[0, :n].detach()).sum(-1).float().cpu().numpy()
                out.append(self._heatmap(values, "attribution", f"contribution to the similarity with '{text}' (gradient x input)", text=text, model=model))
        return out

    def text_embeddings(self, texts: list[str], model: str = "retrieval") -> np.ndarray:
        """(T, E) normalised embeddings of many texts, each encoded once per analysis (cached)."""
        missing = [t for t in dict.fromkeys(texts) if (model, t) not in self._text_cache]
        if missing:
            for t, e in zip(missing, self.models[model].encode_text(missing)):
                self._text_cache[(model, t)] = e
        return np.stack([self._text_cache[(model, t)] for t in texts])

    def text_score(self, text: str, keep: np.ndarray | None = None, model: str = "retrieval") -> float:
        """The slide's similarity to ``text``; with ``keep`` (patch indices) only those patches are encoded."""
        self._need_ready()
        t = self.text_embedding(text, model)
        if keep is None:
            emb = self.embedding(model)
        else:
            f = self.features
            keep = np.asarray(keep)
            emb = self.models[model].encode_slide(f.features[keep], f.xy_level0[keep], f.mpp)
        return float(max_over_queries(emb.embedding, t[None])[0])

    def zero_shot(self, classes: dict[str, list[str]] | None = None, model: str = "retrieval") -> ZeroShot:
        """Class probabilities of the slide (softmax with the model's temperature) and a map per class."""
        self._need_ready()
        if classes is None:
            sets, default = load_class_sets()
            classes = sets[default]
        classes = check_classes(classes)
        m = self.models[model]
        cls = class_embeddings(m, classes)  # (C, E)
        temperature = float(m.scale().detach())
        sims = max_over_queries(self.embedding(model).embedding, cls)  # (C,)
        probs = softmax(temperature * sims)
        names = list(classes)
        gen = self.models["generation"]
        local = softmax(float(gen.scale().detach()) * self._region_similarity(class_embeddings(gen, classes)), axis=1)  # (N, C)
        maps = {c: self._heatmap(local[:, k], "zero-shot", f"P({c}) per region", cls=c, classes=names) for k, c in enumerate(names)}
        return ZeroShot(dict(zip(names, map(float, probs))), dict(zip(names, map(float, sims))), maps, temperature, model)

    def in_distribution(self):
        """How far the slide's patch features lie from the model's training data (``InDistribution``),
        or None when no feature distribution ships for the selected encoder's weights."""
        from napari_pathalign.models.distribution import load_embedded_distribution

        self._need_ready()
        if self._in_distribution is None and self.encoder is not None and self.encoder.name == "embedded":
            try:
                dist = load_embedded_distribution()
                self._in_distribution = dist.slide_score(self.features)
            except (ValueError, FileNotFoundError):  # retrained weights without a refitted distribution
                return None
        return self._in_distribution

    # ------------------------------------------------------------------ drafts and answers
    def iter_draft(self, config=None, prompt: str = "Final diagnosis:"):
        """Generator of the draft so far (text, token by token); returns a ``Draft`` with support and evidence."""
        from napari_pathalign.models.decoder import GenerationConfig
        from napari_pathalign.pipeline.drafting import iter_generate

        self._need_ready()
        if not isinstance(prompt, str):
            raise ValueError(f"the prompt must be text, got {prompt!r}")
        return (yield from iter_generate(self, prompt, config or GenerationConfig()))

    def iter_answer(self, question: str, history: list | None = None, config=None):
        """Generator of the answer so far; returns an ``Answer`` (a Draft with ``question``) with evidence.

        ``history``: earlier (question, answer) pairs. The model sees them only when its checkpoint
        says it was trained with them; otherwise it answers from the slide and this question alone,
        and the answer's ``note`` says so.
        """
        from napari_pathalign.models.decoder import GenerationConfig
        from napari_pathalign.pipeline.drafting import check_question, iter_generate, trained_with_history

        self._need_ready()
        question = check_question(question)
        history = list(history or [])
        uses = bool(history) and trained_with_history(self.models["generation"])
        prompt = " ".join(f"{q} {a}" for q, a in history) + " " + question if uses else question
        note = "" if uses or not history else "answered from the slide and this question alone: this model was not trained with conversation history"
        return (yield from iter_generate(self, prompt.strip(), config or GenerationConfig(max_new_tokens=32), question=question, history_used=uses, note=note))

    def statements_at(self, xy_level0):
        """What the drafts and answers say about one place: their sentences ranked by how much this
        patch supports each (its percentile in the sentence's evidence map), and the patch's zero-shot
        class probabilities. None off the analysed patches."""
        from napari_pathalign.pipeline.drafting import PatchStatements

        self._need_ready()
        f = self.features
        i = patch_at(f.xy_level0, f.size_level0, xy_level0)
        if i is None:
            return None
        ranked = []
        for s in self.statements:
            v = s.evidence.heatmap.raw_values
            ranked.append((s, float((v < v[i]).mean())))
        ranked.sort(key=lambda sv: -sv[1])
        if self._default_zero_shot is None:  # a click in the dock asks this: compute the class maps once
            self._default_zero_shot = self.zero_shot()
        z = self._default_zero_shot
        return PatchStatements(i, f.xy_level0[i].copy(), ranked, {c: float(h.values[i]) for c, h in z.heatmaps.items()})

    # ------------------------------------------------------------------ regions
    def region(self, polygon_xy_level0) -> SlideAnalysis:
        """The analysis of the patches whose centres lie inside a polygon (V, 2) of level-0 (x, y)."""
        from napari_pathalign.pipeline.regions import patches_in_polygon

        self._need_ready()
        f = self.features
        index = patches_in_polygon(f.xy_level0, f.size_level0, polygon_xy_level0)
        if len(index) == 0:
            raise ValueError("no analysed patch lies inside the region; draw it over tissue (patch centres must fall inside)")
        child = SlideAnalysis.__new__(SlideAnalysis)
        child.__dict__.update(self.__dict__)
        child.features = replace(f, features=f.features[index], xy_level0=f.xy_level0[index], cache_key="", extra={**f.extra, "region_of": f.cache_key})
        child._regions = self._regions[index]
        child._embeddings = {}
        child._text_cache = dict(self._text_cache)
        child.polygon_xy_level0 = np.asarray(polygon_xy_level0, np.float64)
        child.statements = []
        child._in_distribution = None
        child._default_zero_shot = None
        child._claim_checker = None  # its measurements are of the region's patches
        child.parent = self
        child.patch_index = index  # rows of the parent's patches
        for _ in child._encode():
            pass
        return child


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


def _check_text(text) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"the text is empty ({text!r}); type a phrase such as 'metastatic carcinoma'")
    if len(text) > 2000:
        raise ValueError(f"the text is {len(text)} characters; keep a phrase under 2,000 characters")
    return text.strip()
