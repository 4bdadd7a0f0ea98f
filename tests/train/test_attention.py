"""Per-sequence SDPA for padding-free batches: flattened sequences must not see each other."""

from __future__ import annotations

import torch
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from malt.train import attention, lora


def flattened(seqs: list[torch.Tensor]) -> dict:
    """TRL's own padding-free collation of `seqs` (one row, boundaries in cu_seq_lens_q)."""
    batch = DataCollatorForLanguageModeling(pad_token_id=1, padding_free=True)(
        [{"input_ids": s.tolist()} for s in seqs])
    batch.pop("labels")
    return batch


def test_flattened_batch_equals_each_sequence_alone(tiny_model):
    torch.manual_seed(0)
    seqs = [torch.randint(6, 100, (n,)) for n in (37, 64, 5)]
    model = lora.load_model(str(tiny_model), bf16=False,
                            attn_implementation=attention.register()).eval()
    with torch.no_grad():
        flat = model(**flattened(seqs)).logits[0]
        alone = torch.cat([model(s[None]).logits[0] for s in seqs])
    torch.testing.assert_close(flat, alone, rtol=1e-5, atol=1e-5)


def test_padded_batches_and_generation_fall_back_to_stock_sdpa(tiny_model):
    torch.manual_seed(1)
    ids = torch.randint(6, 100, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding, as at generation time
    ours = lora.load_model(str(tiny_model), bf16=False,
                           attn_implementation=attention.register()).eval()
    stock = lora.load_model(str(tiny_model), bf16=False, attn_implementation="sdpa").eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, attention_mask=mask).logits,
                                   stock(ids, attention_mask=mask).logits)
        out = ours.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
        ref = stock.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
    assert torch.equal(out, ref)
