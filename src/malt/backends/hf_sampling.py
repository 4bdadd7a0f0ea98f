"""Per-row seeded sampling for `transformers` `generate`, independent of batch composition.

`generate` takes one global RNG, so a row's sample would depend on which other rows share
its batch. Instead we decode greedily over logits perturbed with Gumbel noise:
argmax(logits / T + G) with G ~ Gumbel(0, 1) is an exact sample from softmax(logits / T).
The noise for (row, step, token) is a counter-based hash of the row's seed, the decoding
step and the token id, computed vectorised on the logits' device. A row's samples therefore
depend only on its seed and its own logits.

What holds: the same prompt with the same seed yields the same tokens in any batch, as long
as its logits are the same. Logits of a left-padded row equal those of the row alone up to
floating-point rounding of batched kernels (last bits); that can flip a choice only when two
perturbed logits tie to within that rounding, which did not happen in our tests on CPU fp32.
bf16 on GPU rounds more coarsely, so rare divergences there are possible.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_MASK = 0xFFFFFFFF


def fmix32(h: torch.Tensor) -> torch.Tensor:
    """Murmur3's 32-bit finaliser on int64 tensors holding 32-bit values (a bijection).

    >>> int(fmix32(torch.tensor([0]))[0]), int(fmix32(torch.tensor([1]))[0])
    (0, 1364076727)
    """
    h = h ^ (h >> 16)
    h = (h * 0x85EBCA6B) & _MASK
    h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35) & _MASK
    return h ^ (h >> 16)


def row_keys(seeds: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """Fold 63-bit seeds into well-mixed 32-bit keys (one per row)."""
    lo = torch.tensor([s & _MASK for s in seeds], dtype=torch.int64, device=device)
    hi = torch.tensor([(s >> 32) & _MASK for s in seeds], dtype=torch.int64, device=device)
    return fmix32(lo ^ fmix32((hi + 0x9E3779B9) & _MASK))


def uniform_noise(keys: torch.Tensor, step: int, vocab: int) -> torch.Tensor:
    """Uniform(0, 1) float64 noise of shape (rows, vocab) for one decoding step."""
    step_key = fmix32(torch.tensor([(step * 0x9E3779B9 + 0x7F4A7C15) & _MASK], device=keys.device))
    k = fmix32(keys ^ step_key)[:, None]
    tokens = torch.arange(vocab, dtype=torch.int64, device=keys.device)
    v = fmix32((tokens * 0x85EBCA77 + 0x165667B1) & _MASK)[None, :]
    # Second round with +k so two rows' noise is not a permutation of each other.
    h = fmix32((fmix32(k ^ v) + k) & _MASK)
    return (h.to(torch.float64) + 0.5) / 2.0**32


class SeededGumbel:
    """Logits processor adding per-row seeded Gumbel noise; use with greedy decoding."""

    def __init__(self, seeds: Sequence[int], prompt_len: int, device: torch.device | str):
        self.keys = row_keys(seeds, device)
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_len
        u = uniform_noise(self.keys, step, scores.shape[-1])
        gumbel = -torch.log(-torch.log(u))
        return scores.float() + gumbel.to(torch.float32)


def sampling_processors(
    seeds: Sequence[int], prompt_len: int, temperature: float, top_p: float, device
) -> list:
    """Processors that turn greedy `generate` into seeded temperature/top-p sampling."""
    if temperature == 0:
        return []  # greedy: argmax of the raw logits
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    procs: list = [TemperatureLogitsWarper(temperature)]
    if top_p < 1.0:
        procs.append(TopPLogitsWarper(top_p))
    procs.append(SeededGumbel(seeds, prompt_len, device))
    return procs
