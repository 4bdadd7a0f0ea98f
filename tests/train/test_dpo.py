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
    return dpo.build_trainer(cfg, phase, Dataset.from_list(dpo_rows("verifier", 6)), sft)


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
