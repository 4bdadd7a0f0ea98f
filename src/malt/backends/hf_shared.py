"""Decoding with the prompt's KV cache stored once for its n samples (`kv_cache: shared`).

MALT samples n continuations of every prompt. With a plain KV cache each of the n rows holds
its own copy of the prompt's keys and values, and every decoding step reads all n copies.
On a CPU (and for long prompts on a GPU) decoding is bound by those reads, not by arithmetic:
for 192 rows of 470-token prompts the cache is ~0.4 GB per step on the 0.9M-parameter
embedded model. Here the prompt part is stored once per prompt and each decoding step reads
it once for all the prompt's samples (and, with grouped-query attention, for all query heads
that share a key head); each row keeps only its own generated tokens. This is the "cascade"
or shared-prefix decoding that vLLM uses for common prefixes, done on `transformers` models
through their public extension points: a `Cache` whose layers hold the two parts, an
attention function registered with `AttentionInterface`, and a mask function registered with
`AttentionMaskInterface` (the layer applies the prompts' padding itself; generated tokens are
never padding).

Scores against the prompt and against the row's own tokens are joined in one softmax, so the
result is the same attention as over the concatenated cache, up to float rounding. Only
decoder layers of the plain kind are supported: full causal attention, no sliding window,
no logit soft-capping, keys updated before attention (`SUPPORTED`); others use the static
cache.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.cache_utils import Cache, CacheLayerMixin

NAME = "malt_shared_prompt"
# Model types whose attention this module reproduces (full causal attention, keys and values
# passed from the cache update straight to the attention function).
SUPPORTED = ("llama", "qwen2", "qwen3", "mistral")


def supports(model) -> bool:
    """Whether `model` can decode with a shared prompt cache."""
    cfg = model.config
    return (getattr(cfg, "model_type", None) in SUPPORTED
            and getattr(cfg, "sliding_window", None) in (None, 0)
            and not getattr(cfg, "use_sliding_window", False)
            and getattr(cfg, "attn_logit_softcapping", None) is None)


class SharedPromptLayer(CacheLayerMixin):
    """One decoder layer's cache: prompt keys/values per prompt, generated ones per row.

    `rows[r]` is the prompt (group) of row r and `slots[r]` its sample index within the
    group; `bias` is 0 on a prompt's tokens and -inf on its left padding.
    """

    is_compileable = False
    is_sliding = False

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor,
                 rows: torch.Tensor, slots: torch.Tensor, n: int, capacity: int):
        super().__init__()
        self.prompt_keys, self.prompt_values, self.bias = keys, values, bias
        self.rows, self.slots, self.n, self.capacity = rows, slots, n, capacity
        self.width = keys.shape[2]  # prompt positions, padding included
        self.length = 0  # generated positions held
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        shape = (key_states.shape[0], key_states.shape[1], self.capacity, key_states.shape[3])
        # Never read past `length`, so the memory need not be zeroed.
        self.keys = key_states.new_empty(shape)
        self.values = value_states.new_empty(shape[:3] + (value_states.shape[3],))

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[Any, Any]:
        if self.keys is None:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[2]
        if end > self.capacity:
            raise RuntimeError(f"shared prompt cache full ({self.capacity} generated positions)")
        self.keys[:, :, self.length:end] = key_states
        self.values[:, :, self.length:end] = value_states
        self.length = end
        return self, None  # the attention function below reads both parts from the layer

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.width + self.length + query_length, 0

    def get_seq_length(self) -> int:
        return self.width + self.length

    def get_max_length(self) -> int:
        return -1

    def select_rows(self, keep: torch.Tensor) -> None:
        """Keep only the rows in `keep` (in that order); prompts no row uses are dropped."""
        m = len(keep)
        if self.keys is not None:
            self.keys[:m] = self.keys[keep]
            self.values[:m] = self.values[keep]
            self.keys, self.values = self.keys[:m], self.values[:m]
        rows, self.slots = self.rows[keep], self.slots[keep]
        live = torch.unique(rows)
        if len(live) < self.prompt_keys.shape[0]:
            self.prompt_keys, self.prompt_values = self.prompt_keys[live], self.prompt_values[live]
            self.bias = self.bias[live]
            rows = torch.searchsorted(live, rows)
        self.rows = rows


class SharedPromptCache(Cache):
    """A `Cache` of `SharedPromptLayer`s (see the module docstring)."""

    def __init__(self, layers: list[SharedPromptLayer]):
        super().__init__(layers=layers)

    def select_rows(self, keep: torch.Tensor) -> None:
        for layer in self.layers:
            layer.select_rows(keep)


def from_prompt_cache(prompt_cache: Cache, mask: torch.Tensor, n: int, capacity: int
                      ) -> SharedPromptCache:
    """A shared cache from the prompts' prefilled cache (one row per prompt) and their padding
    mask (1 on tokens); rows are prompt-major, n per prompt."""
    p = mask.shape[0]
    bias = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    bias = bias.masked_fill(mask == 0, float("-inf"))[:, None, None, :]
    rows = torch.arange(p, device=mask.device).repeat_interleave(n)
    slots = torch.arange(n, device=mask.device).repeat(p)
    layers = [SharedPromptLayer(layer.keys, layer.values, bias, rows, slots, n, capacity)
              for layer in prompt_cache.layers]
    return SharedPromptCache(layers)


def shared_prompt_attention(module, query: torch.Tensor, key: Any, value: Any,
                            attention_mask: torch.Tensor | None, scaling: float | None = None,
                            dropout: float = 0.0, **kwargs) -> tuple[torch.Tensor, None]:
    """Attention of each row's new token over its prompt (read once per prompt) and over its
    own generated tokens, in one softmax. Returns (rows, 1, heads, head_dim)."""
    layer: SharedPromptLayer = key
    rows_n, heads, q_len, dim = query.shape
    if q_len != 1:
        raise RuntimeError("the shared prompt cache decodes one token per step")
    pk, pv = layer.prompt_keys, layer.prompt_values
    prompts, kv_heads, width, _ = pk.shape
    g, n = heads // kv_heads, layer.n
    scale = dim ** -0.5 if scaling is None else scaling
    q = query.reshape(rows_n, kv_heads, g, dim).float() * scale
    flat = layer.rows * n + layer.slots  # a row's place among prompts x n samples
    # Against the prompts: every query of a prompt's samples (and heads) at once.
    grouped = q.new_zeros(prompts * n, kv_heads, g, dim)
    grouped[flat] = q
    grouped = grouped.view(prompts, n, kv_heads, g, dim).transpose(1, 2).reshape(
        prompts, kv_heads, n * g, dim)
    s_prompt = (grouped @ pk.float().transpose(-1, -2)) + layer.bias
    s_prompt = s_prompt.view(prompts, kv_heads, n, g, width).transpose(1, 2).reshape(
        prompts * n, kv_heads, g, width)[flat]
    # Against the row's own generated tokens.
    gk, gv = layer.keys[:, :, :layer.length], layer.values[:, :, :layer.length]
    s_own = q @ gk.float().transpose(-1, -2)
    weights = torch.softmax(torch.cat([s_prompt, s_own], dim=-1), dim=-1)
    w_prompt, w_own = weights[..., :width], weights[..., width:]
    spread = w_prompt.new_zeros(prompts * n, kv_heads, g, width)
    spread[flat] = w_prompt
    spread = spread.view(prompts, n, kv_heads, g, width).transpose(1, 2).reshape(
        prompts, kv_heads, n * g, width)
    o_prompt = (spread @ pv.float()).view(prompts, kv_heads, n, g, dim).transpose(1, 2).reshape(
        prompts * n, kv_heads, g, dim)[flat]
    out = o_prompt + w_own @ gv.float()
    return out.reshape(rows_n, heads, 1, dim).transpose(1, 2).to(query.dtype), None


def _no_mask(*args, **kwargs) -> None:
    """The shared layers apply the prompts' padding themselves; no mask is built."""
    return None


AttentionInterface.register(NAME, shared_prompt_attention)
AttentionMaskInterface.register(NAME, _no_mask)
