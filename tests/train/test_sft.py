"""LoRA SFT through TRL: the adapter changes, loads back, and padding-free batches are exact."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from malt.config import TrainConfig
from malt.train import lora
from malt.train.sft import Phase, build_trainer, run_sft
from malt.train.synthetic import sft_rows

pytestmark = pytest.mark.slow


def phase(tiny_model, root, **kw):
    return Phase(model=str(tiny_model), dest=root / "sft", run_dir=root / "run",
                 learning_rate=kw.pop("lr", 2e-3), epochs=kw.pop("epochs", 1), **kw)


def test_lora_sft_publishes_a_changed_loadable_adapter(tiny_model, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file

    cfg = TrainConfig(batch_size=4, logging_steps=1, max_length=128)
    rows = Dataset.from_list(sft_rows("generator", 8))
    metrics = run_sft(cfg, phase(tiny_model, tmp_path, epochs=2), rows)
    assert metrics["status"] == "trained" and metrics["steps"] == 4 and metrics["rows"] == 8
    assert metrics["loss"]["last"] < metrics["loss"]["first"]
    weights = load_file(tmp_path / "sft" / "adapter_model.safetensors")
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # B starts at zero
    targets = {k.split(".")[-3] for k in weights}
    assert targets == set(cfg.target_modules)  # attention and MLP projections
    base = lora.load_model(str(tiny_model), bf16=False).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        before = base(ids).logits
        tuned = PeftModel.from_pretrained(base, tmp_path / "sft").eval()
        after = tuned(ids).logits
    assert (after - before).abs().max() > 1e-3
    assert not (tmp_path / ".sft.tmp").exists()


def first_loss(tiny_model, root, **cfg_kw) -> float:
    cfg = TrainConfig(batch_size=4, logging_steps=1, max_length=256, max_steps=1, **cfg_kw)
    rows = sft_rows("verifier", 4)
    rows[0]["completion"][0]["content"] += " and a much longer explanation" * 3  # uneven lengths
    return run_sft(cfg, phase(tiny_model, root), Dataset.from_list(rows))["loss"]["first"]


def test_padding_free_batches_give_the_padded_loss(tiny_model, tmp_path):
    """Flattened sequences must attend only within themselves (block-diagonal mask on CPU)."""
    padded = first_loss(tiny_model, tmp_path / "pad", padding_free=False)
    flat = first_loss(tiny_model, tmp_path / "flat", padding_free=True)
    assert flat == pytest.approx(padded, rel=1e-6)


def test_packing_runs_and_counts_blocks(tiny_model, tmp_path):
    cfg = TrainConfig(batch_size=1, logging_steps=1, max_length=256, packing=True)
    metrics = run_sft(cfg, phase(tiny_model, tmp_path), Dataset.from_list(sft_rows("refiner", 8)))
    assert metrics["status"] == "trained"
    assert metrics["steps"] < 8  # several rows per 256-token block


def test_rows_over_max_length_are_left_out_and_counted(tiny_model, tmp_path):
    rows = sft_rows("generator", 4)
    rows[3]["completion"][0]["content"] = "y" * 300
    cfg = TrainConfig(batch_size=2, max_length=120)
    metrics = run_sft(cfg, phase(tiny_model, tmp_path / "a"), Dataset.from_list(rows))
    assert metrics["rows_dropped_too_long"] == 1 and metrics["steps"] == 2
    lengths = metrics["lengths"]
    assert lengths["rows"] == 4 and lengths["kept"] == 3 and lengths["too_long"] == 1
    assert lengths["max"] > 300 and lengths["p50"] <= 120 and lengths["max_length"] == 120
    all_long = run_sft(cfg, phase(tiny_model, tmp_path / "b"), Dataset.from_list(rows[3:]))
    assert all_long["status"] == "skipped" and "max_length" in all_long["reason"]
    assert not (tmp_path / "b" / "sft").exists()


@pytest.mark.parametrize("flags", [{"padding_free": False}, {"packing": True}])
def test_padded_and_packed_rows_are_never_cut(tiny_model, tmp_path, flags):
    """TRL would cut an over-long row here; it is left out and counted instead."""
    rows = sft_rows("verifier", 4)
    rows[2]["completion"][0]["content"] = "y" * 300
    cfg = TrainConfig(batch_size=2, max_length=120, **flags)
    trainer, lengths = build_trainer(cfg, phase(tiny_model, tmp_path), Dataset.from_list(rows))
    assert lengths["too_long"] == 1 and lengths["kept"] + lengths["dropped"] == 4
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    tok = lora.load_tokenizer(str(tiny_model))
    whole = sum(len(tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=True,
                                            return_dict=True)["input_ids"])
                for i, r in enumerate(rows) if i != 2)
    assert tokens == whole  # the three rows that fit, every token of them
