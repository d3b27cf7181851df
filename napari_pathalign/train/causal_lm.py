"""A small causal LM of our own: a byte-level BPE tokenizer fitted to report text and a GPT-2.

Used by tests (tiny, untrained) and by the embedded generator (trained on demo report text, then
frozen). Any other transformers causal LM in a local folder plugs into PathAlign the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class CausalLMConfig:
    """Size of the GPT-2 and its tokenizer."""

    vocab_size: int = 2000  # BPE merges fitted to the corpus (reports use a small vocabulary)
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads
    n_embd: int = 256  # width
    n_positions: int = 512  # longest sequence (soft prompt + prompt + report)


def new_causal_lm(texts: list[str], out: str | Path, cfg: CausalLMConfig = CausalLMConfig(), seed: int = 0) -> Path:
    """Fit a tokenizer to ``texts`` and save it with a freshly initialised GPT-2 to ``out``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    out = Path(out)
    special = ["<|endoftext|>", "<pad>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", pad_token="<pad>", unk_token=None)
    torch.manual_seed(seed)
    gcfg = GPT2Config(
        vocab_size=len(fast), n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, n_positions=cfg.n_positions,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
    )
    model = GPT2LMHeadModel(gcfg)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    model.save_pretrained(out, safe_serialization=True)
    return out
