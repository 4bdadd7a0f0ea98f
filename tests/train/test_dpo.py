"""DPO's reference policy is the SFT policy, not the base model with the adapter switched off."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from malt.config import TrainConfig
from malt.train import dpo, lora
from malt.train.sft import Phase, run_sft
from malt.train.synthetic import dpo_rows, sft_rows

pytestmark = pytest.mark.slow


def completion_logps(model, batch) -> torch.Tensor:
    """Summed log-probs of the completion tokens, computed by hand (independent of TRL)."""
    kwargs = {k: v for k, v in batch.items() if k not in ("completion_mask", "ref_chosen_logps",
                                                          "ref_rejected_logps")}
    with torch.no_grad():
        logits = model(**kwargs, use_cache=False).logits[:, :-1].float()
    logps = torch.log_softmax(logits, dim=-1)
    targets = batch["input_ids"][:, 1:]
    token_logps = logps.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (token_logps * batch["completion_mask"][:, 1:]).sum(dim=1)


@pytest.fixture(scope="module")
def sft_adapter(tiny_model, tmp_path_factory):
    """An SFT adapter trained hard enough to move the policy well away from the base."""
    root = tmp_path_factory.mktemp("sft")
    cfg = TrainConfig(batch_size=4, logging_steps=1, max_length=128, lora_dropout=0.0)
    phase = Phase(model=str(tiny_model), dest=root / "sft", run_dir=root / "run",
                  learning_rate=5e-3, epochs=3)
    run_sft(cfg, phase, Dataset.from_list(sft_rows("verifier", 8)))
    return root / "sft"


def dpo_trainer(tiny_model, tmp_path, sft, *, full=False, lr=5e-3):
    cfg = TrainConfig(batch_size=2, logging_steps=1, max_length=128, full_finetune=full,
                      lora_dropout=0.0)
    phase = Phase(model=str(tiny_model), dest=tmp_path / "final", run_dir=tmp_path / "run",
                  learning_rate=lr, epochs=1)
    trainer, _ = dpo.build_trainer(cfg, phase, Dataset.from_list(dpo_rows("verifier", 6)), sft)
    return trainer


@pytest.fixture(scope="module")
def trained(tiny_model, sft_adapter, tmp_path_factory):
    """A LoRA DPO trainer that has run its epoch, starting from the SFT adapter."""
    trainer = dpo_trainer(tiny_model, tmp_path_factory.mktemp("dpo"), sft_adapter)
    trainer.train()  # the policy moves away from SFT; the reference must not
    return trainer


def first_batch(trainer):
    return trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))


def test_reference_logps_are_the_sft_policy_not_the_base(tiny_model, sft_adapter, trained):
    trainer = trained
    batch = first_batch(trainer)
    trainer.model.eval()
    assert trainer.ref_model is None  # so TRL switches the policy to its frozen "ref" adapter
    ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    ref = torch.cat([ref_chosen, ref_rejected])

    sft_model = lora.load_adapter(lora.load_model(str(tiny_model), bf16=False), sft_adapter,
                                  trainable=False).eval()
    base_model = lora.load_model(str(tiny_model), bf16=False).eval()
    torch.testing.assert_close(ref, completion_logps(sft_model, batch), rtol=1e-5, atol=1e-4)
    # The trap (base model with the adapter disabled) would give clearly different numbers.
    assert (ref - completion_logps(base_model, batch)).abs().max() > 0.5
    # And the trained policy itself has moved away from its reference.
    assert (ref - completion_logps(trainer.model, batch)).abs().max() > 1e-3


def test_first_step_rewards_are_zero_because_policy_starts_at_reference(trained):
    first = trained.state.log_history[0]
    assert first["rewards/chosen"] == pytest.approx(0.0, abs=1e-5)
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-5)
    assert first["loss"] == pytest.approx(0.693147, abs=1e-4)  # -log sigmoid(0)


def test_saved_policy_is_only_the_trained_adapter(tiny_model, sft_adapter, trained, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file

    dpo.save_policy(trained, tmp_path / "out")
    assert not (tmp_path / "out" / "ref").exists()
    trained = load_file(tmp_path / "out" / "adapter_model.safetensors")
    before = load_file(sft_adapter / "adapter_model.safetensors")
    assert trained.keys() == before.keys()
    assert any(not torch.equal(trained[k], before[k]) for k in trained)
    base = lora.load_model(str(tiny_model), bf16=False)
    model = PeftModel.from_pretrained(base, tmp_path / "out")
    assert list(model.peft_config) == ["default"]


def test_full_finetune_reference_is_the_sft_model(tiny_model, tmp_path):
    cfg = TrainConfig(batch_size=4, max_length=128, full_finetune=True)
    sft_phase = Phase(model=str(tiny_model), dest=tmp_path / "sft", run_dir=tmp_path / "sft_run",
                      learning_rate=1e-3, epochs=1)
    run_sft(cfg, sft_phase, Dataset.from_list(sft_rows("refiner", 8)))
    trainer = dpo_trainer(tiny_model, tmp_path / "dpo", tmp_path / "sft", full=True, lr=1e-3)
    trainer.train()
    batch = first_batch(trainer)
    assert trainer.ref_model is not None  # a separate frozen copy, as TRL's own precompute uses
    ref = torch.cat(trainer.compute_ref_log_probs(trainer.ref_model, batch))
    sft_model = lora.load_model(str(tmp_path / "sft"), bf16=False).eval()
    torch.testing.assert_close(ref, completion_logps(sft_model, batch), rtol=1e-5, atol=1e-4)
    base = lora.load_model(str(tiny_model), bf16=False).eval()
    assert (ref - completion_logps(base, batch)).abs().max() > 1e-3


def test_pairs_that_would_be_cut_are_left_out_and_counted(tiny_model, tmp_path):
    rows = dpo_rows("verifier", 6)
    rows[1]["chosen"][0]["content"] = "w" * 300  # a character tokenizer: the answer would be cut
    rows[4]["prompt"][1]["content"] = "q" * 300  # the prompt alone fills max_length
    cfg = TrainConfig(batch_size=2, logging_steps=1, max_length=128, lora_dropout=0.0, max_steps=1)

    def phase(name):
        return Phase(model=str(tiny_model), dest=tmp_path / name / "final",
                     run_dir=tmp_path / name / "run", learning_rate=1e-3, epochs=1)

    trainer, lengths = dpo.build_trainer(cfg, phase("a"), Dataset.from_list(rows), None)
    seen = trainer.train_dataset  # as TRL tokenized it
    assert lengths["completion_cut"] == 1 and lengths["prompt_too_long"] == 1
    assert len(seen) == lengths["kept"] == 4 and lengths["kept"] + lengths["dropped"] == 6
    assert lengths["max"] > 300 and lengths["max_length"] == 128
    for ex in seen:  # nothing left for TRL's collator to cut, nor for its prompt filter to drop
        assert len(ex["prompt_ids"]) + max(len(ex["chosen_ids"]), len(ex["rejected_ids"])) <= 128
    batch = next(iter(trainer.get_train_dataloader()))
    answers = sum(len(ex["chosen_ids"]) + len(ex["rejected_ids"]) for ex in seen.select([0, 1]))
    assert int(batch["completion_mask"].sum()) == answers  # every answer token is trained on

    metrics = dpo.run_dpo(cfg, phase("b"), Dataset.from_list(rows), None)
    assert metrics["status"] == "trained" and metrics["rows"] == 6
    assert metrics["rows_dropped_completion_cut"] == 1
    assert metrics["rows_dropped_prompt_too_long"] == 1
    assert metrics["lengths"] == lengths
    none_fit = dpo.run_dpo(cfg, phase("c"), Dataset.from_list([rows[1], rows[4]]), None)
    assert none_fit["status"] == "skipped" and "max_length=128" in none_fit["reason"]
    assert none_fit["lengths"]["dropped"] == 2 and not (tmp_path / "c" / "final").exists()
