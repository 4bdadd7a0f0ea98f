"""Padding-free attention for CPU (and any device without a varlen flash-attention kernel).

TRL's padding-free collator flattens a batch into one sequence and passes the sequence
boundaries (`cu_seq_lens_q`). Plain SDPA then attends over the whole flattened sequence
with a block-diagonal mask: exact, but quadratic in the total length, so it is slower than
padding. This registers an attention function for transformers' `AttentionInterface` that
runs causal SDPA on each sequence separately (what varlen flash attention does on GPUs),
and falls back to stock SDPA for ordinary padded batches and for generation.
"""

from __future__ import annotations

from typing import Any

NAME = "malt_segments"


def segment_sdpa(module: Any, query, key, value, attention_mask, dropout: float = 0.0,
                 scaling: float | None = None, **kwargs) -> tuple[Any, None]:
    """Causal SDPA per packed sequence when boundaries are given, else stock SDPA."""
    import torch
    from torch.nn.functional import scaled_dot_product_attention
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cu = kwargs.get("cu_seq_lens_q")
    if cu is None or query.shape[0] != 1 or key.shape[2] != query.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    bounds = cu.tolist()
    gqa = key.shape[1] != query.shape[1]
    parts = [
        scaled_dot_product_attention(
            query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], is_causal=True, scale=scaling,
            dropout_p=dropout if module.training else 0.0, enable_gqa=gqa)
        for s, e in zip(bounds[:-1], bounds[1:], strict=True) if e > s
    ]
    out = torch.cat(parts, dim=2)  # (1, heads, total, head_dim)
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Make `attn_implementation=NAME` available to transformers models; returns NAME."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, segment_sdpa)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
    return NAME
