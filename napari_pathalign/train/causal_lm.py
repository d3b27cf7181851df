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
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", pad_token="<pad>", unk_token=None
    )
    torch.manual_seed(seed)
    gcfg = GPT2Config(
        vocab_size=len(fast),
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_embd=cfg.n_embd,
        n_positions=cfg.n_positions,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    model = GPT2LMHeadModel(gcfg)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    model.save_pretrained(out, safe_serialization=True)
    return out


def train_causal_lm(
    folder: str | Path,
    texts: list[str],
    steps: int = 500,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    position_offset: int = 0,
    progress: bool = False,
) -> dict:
    """Language-model ``texts`` with the LM saved in ``folder`` (in place); returns first/last loss.

    The embedded generator is trained this way on report text only, then frozen: PathAlign stage 2
    learns to steer it through the soft prompt. ``position_offset``: the number of soft-prompt
    tokens it will read first; the text is trained at the positions it will have then (GPT-2's
    positions are absolute, so text learned at 0 reads worse at 32).
    """
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).train()
    eos = tok.eos_token
    rows = [tok(t + eos, add_special_tokens=False)["input_ids"] for t in texts]
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    losses = []
    for step in tqdm(range(steps), desc="language model", disable=not progress):
        pick = torch.randint(len(rows), (batch_size,), generator=g).tolist()
        length = max(len(rows[i]) for i in pick)
        ids = torch.tensor([rows[i] + [tok.pad_token_id] * (length - len(rows[i])) for i in pick])
        mask = torch.tensor([[1] * len(rows[i]) + [0] * (length - len(rows[i])) for i in pick])
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 50)
        labels = ids.masked_fill(mask == 0, -100)
        embeds = model.get_input_embeddings()(ids)  # (B, L, dim)
        if position_offset:
            hints = torch.stack(
                [torch.tensor(rows[i])[torch.randint(len(rows[i]), (position_offset,), generator=g)] for i in pick]
            )  # (B, K)
            embeds = torch.cat([model.get_input_embeddings()(hints), embeds], dim=1)  # (B, K+L, dim)
            mask = torch.cat([torch.ones(len(pick), position_offset, dtype=mask.dtype), mask], dim=1)
            labels = torch.cat([torch.full((len(pick), position_offset), -100), labels], dim=1)
        loss = model(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss))
    model.save_pretrained(folder, safe_serialization=True)
    return {"first_loss": losses[0], "last_loss": sum(losses[-20:]) / len(losses[-20:])}
