"""A tiny Llama-style model and a character-level tokenizer, built locally with no downloads.

The result is an ordinary Hugging Face model folder (config.json, model.safetensors,
tokenizer files with a chat template), so every backend and trainer loads it exactly as it
would a real checkpoint. Weights here are random; `malt.embedded` pretrains them.
"""

from __future__ import annotations

import string
from dataclasses import asdict, dataclass
from pathlib import Path

SPECIAL_TOKENS = ["<unk>", "<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
EOS = "<|end|>"
PAD = "<|pad|>"

# One turn per message, each closed by <|end|> (the EOS token, so generation stops there).
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


@dataclass(frozen=True)
class TinySize:
    """Shape of the tiny decoder (about 0.9M parameters at the defaults)."""

    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    max_position_embeddings: int = 1024
    # Weight init std. Pretraining uses a larger one (see malt.embedded.build): at 0.02 a
    # 128-wide model's attention starts near uniform and takes far longer to learn to copy.
    initializer_range: float = 0.02


def build_tokenizer():
    """A character-level fast tokenizer over printable ASCII with a chat template."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    chars = [c for c in string.printable if c not in "\x0b\x0c\r"]
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + chars)}
    # BPE with no merges and no pre-tokenizer splits text into single characters.
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    core.add_special_tokens(SPECIAL_TOKENS)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token=PAD,
        eos_token=EOS,
        padding_side="left",
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def init_model(out_dir: str | Path, seed: int = 0, size: TinySize = TinySize()) -> Path:
    """Save a randomly initialised tiny Llama and its tokenizer to `out_dir`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        **asdict(size),
        num_key_value_heads=size.num_attention_heads,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out
