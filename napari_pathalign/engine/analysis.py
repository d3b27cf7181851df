"""``PreparedSlide``: the prepared state of one open slide under its models, computed once, shared by docks.

Users and docks hold its subclass ``reporting.analysis.SlideAnalysis``, which adds drafting, chat and
evidence; this layer knows nothing of reports.

``iter_prepare()`` is a generator of ``Progress`` (a napari ``thread_worker`` shows it and can
cancel between steps): it loads the models, embeds the patches (feature cache on disk), encodes the
slide with the retrieval and the generation model, embeds each patch's neighbourhood for text
heatmaps and keeps the generation model's cross-attention. After that every map is cheap; the maps live in small modules
of functions over this state
(the methods below are their short names):

- ``attention_heatmap`` (``engine/maps.py``): where the Q-Former's queries look (one layer/head/query, or reduced over
  them), or the queries weighted by their similarity to a text (``text=``), which is the readable
  one: the mean of all 32 queries mixes queries that encode different things.
- ``text_heatmap``: how much better a phrase fits each patch's neighbourhood than other tissue
  phrases do (``engine/maps.py``).
- ``zero_shot`` (``engine/zero_shot.py``): class probabilities from prompt ensembles with the model's temperature, and a
  per-patch probability map per class.
- ``region(polygon)``: the same analysis over the patches inside a polygon (features reused),
  built from its parent's state by the ``from_parent`` constructor.

Drafts, answers and their checks are ``reporting``'s (``reporting.drafting.iter_draft(analysis)``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from napari_pathalign.core.grid_config import GridConfig
from napari_pathalign.core.heatmap import Heatmap
from napari_pathalign.core.progress import Progress
from napari_pathalign.engine import maps
from napari_pathalign.engine.features import default_cache_dir
from napari_pathalign.engine.text import check_text
from napari_pathalign.engine.zero_shot import max_over_queries, slide_zero_shot

ROLES = ("retrieval", "generation")
CONTRASTS = maps.CONTRASTS
__all__ = ["ROLES", "CONTRASTS", "Progress", "PreparedSlide", "default_cache_dir"]


class PreparedSlide:
    """One slide through one patch encoder and two PathAlign models (retrieval, generation)."""

    def __init__(
        self,
        slide,
        encoder="embedded",
        model="embedded",
        retrieval_model="embedded-r",
        grid: GridConfig | None = None,
        cache_dir: str | Path | None = None,
        device: str = "auto",
        encoder_weights: str | Path | None = None,
        region_radius: int = 1,
    ):
        """``encoder``: a registered name or a loaded ``PatchEncoder``; ``model``/``retrieval_model``: 'embedded',
        'embedded-r', a checkpoint folder or a loaded ``PathAlign`` (``retrieval_model=None``: ``model`` does both).
        ``grid``: None takes the grid the model was trained with (else ``GridConfig()``); ``cache_dir``: None is the
        user's cache folder. ``region_radius``: lattice cells around a patch that form its neighbourhood."""
        if getattr(slide, "mpp", None) is None:
            source = getattr(slide, "mpp_source", "")
            raise ValueError(
                (
                    f"{getattr(slide, 'path', 'the slide')} has no microns-per-pixel metadata ({source}); PathAlign "
                    "places patches in µm, so it cannot analyse this slide. Re-export it with its resolution (e.g. "
                    "0.5 µm/px for 20x)"
                )
            )
        self.slide = slide
        self._encoder, self._encoder_weights = encoder, encoder_weights
        self._model_specs = {
            "generation": model,
            "retrieval": retrieval_model if retrieval_model is not None else model,
        }
        self.grid = grid
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.device = device
        self.region_radius = int(region_radius)
        self.models: dict = {}  # role -> PathAlign
        self.encoder = None  # PatchEncoder
        self.features = None  # SlideFeatures after iter_prepare
        self.embeddings: dict = {}  # role -> SlideEmbedding
        self.cross_attention: np.ndarray | None = None  # (cross layers, heads, Q, N) of the generation model
        self.neighbourhoods: np.ndarray | None = (
            None  # (N, Q, E) float16 neighbourhood embeddings of the generation model
        )
        self._text_cache: dict = {}  # (role, text) -> (E,) normalised
        self.statements: list = []  # sentences of the drafts and answers made on this analysis (statements_at)
        # results other modules derive from this state once (claim checker, default zero-shot, ...)
        self.cache: dict = {}
        self.polygon_xy_level0: np.ndarray | None = None  # set on a region
        self.parent: PreparedSlide | None = None
        self.patch_index: np.ndarray | None = None  # a region's rows of its parent's patches

    @classmethod
    def from_parent(cls, parent: PreparedSlide, polygon_xy_level0) -> PreparedSlide:
        """The analysis of the parent's patches whose centres lie inside a polygon (V, 2) of level-0 (x, y):
        the parent's models, features and neighbourhood embeddings, re-encoded over those patches."""
        from napari_pathalign.engine.regions import patches_in_polygon

        parent.need_ready()
        f = parent.features
        index = patches_in_polygon(f.xy_level0, f.size_level0, polygon_xy_level0)
        if len(index) == 0:
            raise ValueError(
                "no analysed patch lies inside the region; draw it over tissue (patch centres must fall inside)"
            )
        child = cls(
            parent.slide,
            parent.encoder,
            parent.models["generation"],
            parent.models["retrieval"],
            parent.grid,
            parent.cache_dir,
            parent.device,
            region_radius=parent.region_radius,
        )
        child.models, child.encoder = dict(parent.models), parent.encoder
        child.features = replace(
            f,
            features=f.features[index],
            xy_level0=f.xy_level0[index],
            cache_key="",
            extra={**f.extra, "region_of": f.cache_key},
        )
        child.neighbourhoods = parent.neighbourhoods[index]
        child._text_cache = dict(parent._text_cache)  # texts encode the same on any patches
        child.polygon_xy_level0 = np.asarray(polygon_xy_level0, np.float64)
        child.parent = parent
        child.patch_index = index
        for _ in child._encode():
            pass
        return child

    # ------------------------------------------------------------------ preparation
    @property
    def ready(self) -> bool:
        return self.features is not None and bool(self.embeddings)

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
                raise ValueError(
                    (
                        f"the {role} model reads features of patch encoder {m.cfg.patch_encoder!r}, "
                        f"but {self.encoder.name!r} "
                        f"is selected; pick {m.cfg.patch_encoder!r} as the encoder (with the weights the model was "
                        "trained on)"
                    )
                )
            if m.cfg.patch_encoder_hash and self.encoder.weights_hash != m.cfg.patch_encoder_hash:
                raise ValueError(
                    (
                        f"the {role} model was trained on {m.cfg.patch_encoder!r} weights {m.cfg.patch_encoder_hash}, "
                        f"but the selected weights hash to {self.encoder.weights_hash}; select the weights the model "
                        "was trained on"
                    )
                )

    def _grid(self) -> GridConfig:
        if self.grid is not None:
            return self.grid
        trained = getattr(self.models["generation"], "checkpoint_meta", {}).get("extra", {}).get("train_config", {})
        return GridConfig(**trained.get("grid", {}))

    def iter_prepare(self) -> Iterator[Progress]:
        """Generator of ``Progress``; afterwards ``features``, ``embedding()`` and every heatmap are ready."""
        from napari_pathalign.core.generators import mapped
        from napari_pathalign.engine.features import iter_embed_slide
        from napari_pathalign.engine.library_build import model_identity
        from napari_pathalign.engine.regions import iter_cached_region_embeddings
        from napari_pathalign.models.encoders import load_patch_encoder

        yield Progress("models", 0, 3, "Loading the models ...")
        loaded: dict = {}
        self.models = {role: self._load(self._model_specs[role], loaded) for role in ("generation", "retrieval")}
        yield Progress("models", 2, 3, "Loading the patch encoder ...")
        self.encoder = (
            self._encoder
            if not isinstance(self._encoder, str)
            else load_patch_encoder(self._encoder, self._encoder_weights, self.device)
        )
        self._check_encoder()
        yield Progress("models", 3, 3, f"Models ready on {self.device_info}")
        self.grid = self._grid()
        self.features = yield from mapped(
            iter_embed_slide(self.slide, self.encoder, self.grid, self.cache_dir),
            lambda p: Progress("features", *p, f"Embedding patches: {p[0]}/{p[1]}"),
        )
        if len(self.features.features) == 0:
            self.features = None
            raise ValueError(
                (
                    f"no tissue found on {self.slide.path.name}: no patch has at least {self.grid.min_tissue:.0%} "
                    "tissue; nothing to analyse (lower min_tissue or check the slide)"
                )
            )
        yield from self._encode()
        n = len(self.features.features)
        f = self.features
        gen = self.models["generation"]
        model_hash = model_identity(gen, self.encoder)["model_hash"]
        regions = iter_cached_region_embeddings(
            gen, model_hash, f, self.region_radius, self.cache_dir, self.slide.path.stem
        )
        self.neighbourhoods = yield from mapped(
            regions, lambda p: Progress("regions", *p, f"Embedding patch neighbourhoods: {p[0]}/{p[1]}")
        )
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
            self.embeddings[role] = by_model[id(m)]
        yield Progress("attention", 0, 1, "Cross-attention of the queries ...")
        self.cross_attention = self.models["generation"].attention(f)  # (layers, heads, Q, N)

    @property
    def device_info(self) -> str:
        """Where and in what precision the models run (shown in the dock)."""
        m = self.models.get("generation")
        dev = str(m.device) if m is not None else self.device
        enc = self.encoder
        enc_dtype = str(enc.dtype).replace("torch.", "") if enc is not None else "?"
        return f"{dev} (encoder {enc_dtype}, Q-Former float32)"

    def need_ready(self) -> None:
        """RuntimeError unless ``iter_prepare`` has run."""
        if not self.ready:
            raise RuntimeError("the analysis is not prepared yet: run iter_prepare() (the dock's Analyse) first")

    # ------------------------------------------------------------------ results
    def embedding(self, model: str = "retrieval"):
        """The slide's ``SlideEmbedding`` from the 'retrieval' or 'generation' model."""
        self.need_ready()
        if model not in ROLES:
            raise ValueError(f"model {model!r}; expected one of {ROLES}")
        return self.embeddings[model]

    def text_embedding(self, text: str, model: str = "retrieval") -> np.ndarray:
        """(E,) normalised embedding of one text (cached)."""
        text = check_text(text)
        key = (model, text)
        if key not in self._text_cache:
            self._text_cache[key] = self.models[model].encode_text([text])[0]
        return self._text_cache[key]

    def heatmap(self, values, kind: str, label: str, **params) -> Heatmap:
        """A ``Heatmap`` of one value per analysed patch (N,), with this analysis's geometry."""
        f = self.features
        return Heatmap(values, f.xy_level0, f.size_level0, f.mpp, kind, label, "raw", params)

    @property
    def attention_shape(self) -> tuple[int, int, int]:
        """(cross-attention layers, heads, queries) of the generation model."""
        self.need_ready()
        return tuple(self.cross_attention.shape[:3])

    def text_embeddings(self, texts: list[str], model: str = "retrieval") -> np.ndarray:
        """(T, E) normalised embeddings of many texts, each encoded once per analysis (cached)."""
        missing = [t for t in dict.fromkeys(texts) if (model, t) not in self._text_cache]
        if missing:
            for t, e in zip(missing, self.models[model].encode_text(missing)):
                self._text_cache[(model, t)] = e
        return np.stack([self._text_cache[(model, t)] for t in texts])

    def neighbourhood_similarity(self, texts: np.ndarray) -> np.ndarray:
        """(N, T) cosine similarity of each patch's neighbourhood to normalised texts (T, E), max over queries."""
        out = np.empty((len(self.neighbourhoods), len(texts)), np.float32)
        for start in range(0, len(out), 2048):  # float16 storage, float32 maths, bounded memory
            out[start : start + 2048] = max_over_queries(
                self.neighbourhoods[start : start + 2048].astype(np.float32), texts
            )
        return out

    def in_distribution(self):
        """How far the slide's patch features lie from the model's training data (``InDistribution``),
        or None when no feature distribution ships for the selected encoder's weights."""
        from napari_pathalign.models.distribution import load_embedded_distribution

        self.need_ready()
        if self.cache.get("in_distribution") is None and self.encoder is not None and self.encoder.name == "embedded":
            try:
                dist = load_embedded_distribution()
                self.cache["in_distribution"] = dist.slide_score(self.features)
            except (ValueError, FileNotFoundError):  # retrained weights without a refitted distribution
                return None
        return self.cache.get("in_distribution")

    def in_scope(self):
        """Whether the slide lies inside what the model was trained on (``InScope``: probability, flagged,
        basis), or None when no in-scope model ships for the selected encoder's weights."""
        from napari_pathalign.models.in_scope import load_embedded_in_scope

        self.need_ready()
        if "in_scope" not in self.cache:
            result = None
            if self.encoder is not None and self.encoder.name == "embedded":
                try:
                    result = load_embedded_in_scope(self.encoder).score(self.features)
                except (ValueError, FileNotFoundError):  # retrained weights without a refitted in-scope model
                    result = None
            self.cache["in_scope"] = result
        return self.cache["in_scope"]

    # ------------------------------------------------------------------ short names of the maps
    # The maps are functions of an analysis (engine/maps.py, engine/zero_shot.py); bound here they read
    # as methods, ``analysis.text_heatmap("tumour")`` == ``maps.text_heatmap(analysis, "tumour")``.
    attention_heatmap = maps.attention_heatmap
    query_heatmaps = maps.query_heatmaps
    text_heatmap = maps.text_heatmap
    similarity_attribution = maps.similarity_attribution
    text_score = maps.text_score
    zero_shot = slide_zero_shot

    def region(self, polygon_xy_level0) -> PreparedSlide:
        """``from_parent``: the analysis of the patches whose centres lie inside a polygon (V, 2) of level-0 (x, y)."""
        return type(self).from_parent(self, polygon_xy_level0)
