"""`malt train` across processes: DPO under `accelerate launch`, and the shipped accelerate configs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_train import SRC, adapter, changed, write_config

from malt import cli
from malt.config import TrainConfig
from malt.errors import MaltError
from malt.train.synthetic import write_label_dir

ROOT = SRC.parent
ACCELERATE = ROOT / "configs" / "accelerate"
CONFIGS = sorted(ACCELERATE.glob("*.yaml"))
N_SFT, N_DPO = 8, 24
# Two processes of 2 rows each see, step by step, the rows one process of 4 sees: accelerate
# deals the batches of one seeded shuffle out to the processes. With LoRA dropout off (each
# process would draw other dropout masks than one process does) the losses then agree to
# float rounding. Measured on CPU with this data: DPO train_loss and last logged loss differ
# by ~1e-7 (SFT's are equal); with the default dropout of 0.05 by 8e-4 and 1.4e-3; another
# seed moves DPO train_loss by 6e-3. So 5e-4 tells a faithful split from a different run.
LOSS_TOLERANCE = 5e-4


def launch(config: Path, processes: int, role: str, cwd: Path) -> subprocess.CompletedProcess:
    """`malt train` under `accelerate launch` with `processes` CPU processes (gloo)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC),
           "ACCELERATE_DISABLE_RICH": "1"}
    # The torchrun launcher (`--multi_gpu`) starts the processes; without CUDA, malt's
    # TrainingArguments make them a CPU (gloo) group.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
           "--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", "0",
           "-m", "malt", "train", "--config", str(config), "--role", role, "--no-progress"]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def train_verifier(tmp_path: Path, base: Path, processes: int) -> tuple[dict, Path]:
    """SFT then DPO of the verifier with the same global batch of 4 rows; (metrics, role dir)."""
    write_label_dir(tmp_path / "run" / "label", n_sft=N_SFT, n_dpo=N_DPO)
    config = write_config(tmp_path, base, batch_size=4 // processes, lora_dropout=0.0,
                          save_steps=100)
    if processes == 1:
        assert cli.main(["train", "--config", str(config), "--role", "verifier",
                         "--no-progress"]) == 0
    else:
        proc = launch(config, processes, "verifier", tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.count('"models":') == 1  # only the main process prints the summary
    role_dir = tmp_path / "run" / "train" / "verifier"
    return json.loads((role_dir / "metrics.json").read_text()), role_dir


@pytest.mark.slow
def test_two_process_dpo_matches_one_process(tiny_model, tmp_path, capsys):
    from peft import PeftModel

    from malt.train.lora import load_model

    one, one_dir = train_verifier(tmp_path / "one", tiny_model, processes=1)
    capsys.readouterr()
    two, two_dir = train_verifier(tmp_path / "two", tiny_model, processes=2)

    # 24 pairs, 2 per process and step, 2 processes: 6 optimiser steps in one epoch.
    assert two["complete"] and two["dpo"]["status"] == "trained" and two["dpo"]["rows"] == N_DPO
    assert two["dpo"]["steps"] == math.ceil(N_DPO / (2 * 2)) == one["dpo"]["steps"]
    assert two["sft"]["steps"] == math.ceil(N_SFT / (2 * 2))
    assert two["dpo"]["reference"] == "sft"

    final, sft = adapter(two_dir / "final"), adapter(two_dir / "sft")
    assert all(v.abs().sum() > 0 for k, v in final.items() if "lora_B" in k)
    assert changed(final, sft)  # DPO moved the policy away from its SFT start
    assert not (two_dir / "final" / "ref").exists()  # TRL's frozen reference copy is not saved
    expected = adapter(one_dir / "final")
    assert {k: v.shape for k, v in final.items()} == {k: v.shape for k, v in expected.items()}
    model = PeftModel.from_pretrained(load_model(str(tiny_model), bf16=False), two_dir / "final")
    assert list(model.peft_config) == ["default"]

    assert two["dpo"]["loss"]["first"] == pytest.approx(math.log(2), abs=1e-4)  # policy == ref
    for phase, key in (("dpo", "train_loss"), ("sft", "train_loss")):
        assert two[phase][key] == pytest.approx(one[phase][key], abs=LOSS_TOLERANCE), phase
    last = two["dpo"]["loss"]["last"]
    assert last == pytest.approx(one["dpo"]["loss"]["last"], abs=LOSS_TOLERANCE)
    assert last < math.log(2) - 0.1  # and training did lower it


def header(path: Path) -> str:
    """The comment block a config file opens with."""
    lines = path.read_text().splitlines()
    return "\n".join(line for line in lines[:next(i for i, line in enumerate(lines)
                                                   if not line.startswith("#"))])


def launcher_env(path: Path) -> tuple[object, dict[str, str]]:
    """What `accelerate launch --config_file path` does with the file before starting any
    process: its parsed config, and the environment the processes would get."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    argv = ["--config_file", str(path), "-m", "malt", "train", "--config", "run.yaml"]
    args, defaults, _ = _validate_launch_command(launch_command_parser().parse_args(argv))
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        return defaults, prepare_deepspeed_cmd_env(args)[1]
    return defaults, prepare_multi_gpu_env(args)


def launcher_flag(section: str, key: str) -> str:
    """The `accelerate launch` argument a key of a nested section becomes (as the launcher maps it)."""
    prefix = {"fsdp_config": "fsdp_", "fp8_config": "fp8_", "dynamo_config": "dynamo_"}.get(section)
    return key if prefix is None or key.startswith(prefix) else prefix + key


def test_the_three_accelerate_configs_are_shipped():
    assert [p.name for p in CONFIGS] == ["ddp.yaml", "deepspeed_zero3.yaml", "fsdp.yaml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_an_accelerate_config_is_what_accelerate_reads(path, monkeypatch):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    text = header(path)
    command = (f"accelerate launch --config_file configs/accelerate/{path.name} -m malt train "
               f"--config configs/gsm8k.yaml --role all")
    assert command in text and "num_processes" in text and "num_machines" in text
    config = load_config_from_file(str(path))  # an unknown top-level key raises here
    assert isinstance(config, ClusterConfig)
    assert (config.num_machines, config.num_processes, config.mixed_precision) == (1, 8, "bf16")
    # Keys of the nested sections become launcher arguments and are dropped silently when
    # no argument has their name, so each must name one.
    known = vars(launch_command_parser().parse_args(["x.py"]))
    raw = yaml.safe_load(path.read_text())
    for section in ("deepspeed_config", "fsdp_config", "fp8_config", "dynamo_config"):
        for key in raw.get(section, {}):
            assert launcher_flag(section, key) in known, f"{path.name}: {section}.{key}"
    defaults, env = launcher_env(path)
    for key, value in env.items():
        if key.startswith(("ACCELERATE_", "FSDP_")):
            monkeypatch.setenv(key, value)
    {"MULTI_GPU": check_ddp, "DEEPSPEED": check_zero3, "FSDP": check_fsdp}[
        defaults.distributed_type.value]()


def check_ddp() -> None:
    assert os.environ["ACCELERATE_MIXED_PRECISION"] == "bf16"


def check_zero3() -> None:
    """The plugin accelerate builds from the launcher's environment, as the trainer will."""
    from accelerate.utils import DeepSpeedPlugin

    plugin = DeepSpeedPlugin()
    plugin.set_mixed_precision(os.environ["ACCELERATE_MIXED_PRECISION"])
    ds = plugin.deepspeed_config
    assert plugin.zero_stage == 3 and plugin.zero3_init_flag
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    # Left to the trainer, which fills them from malt's TrainingArguments (no mismatch).
    assert ds["gradient_accumulation_steps"] == "auto" and ds["gradient_clipping"] == "auto"
    assert ds["train_micro_batch_size_per_gpu"] == "auto" and ds["bf16"] == {"enabled": True}


def check_fsdp() -> None:
    """The plugin accelerate builds from the launcher's environment, and malt's settings."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import StateDictType

    from malt.train.settings import fsdp_checkpointing, gradient_checkpointing

    plugin = FullyShardedDataParallelPlugin()  # a wrong value (policy, dict type) raises here
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT  # adapters are saved whole
    assert plugin.transformer_cls_names_to_wrap is None  # the model's own decoder layer class
    assert plugin.cpu_ram_efficient_loading is True
    assert type(plugin.cpu_offload).__name__ == "OffloadPolicy"  # FSDP2's: nothing offloaded
    assert fsdp_checkpointing() == plugin.activation_checkpointing
    # The trainer refuses FSDP's and its own activation checkpointing together.
    assert not (plugin.activation_checkpointing and gradient_checkpointing(TrainConfig()))


def test_fsdp_activation_checkpointing_turns_malts_own_off(monkeypatch):
    from malt.train.settings import gradient_checkpointing

    monkeypatch.setattr("malt.train.settings.gpu_available", lambda: True)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_ACTIVATION_CHECKPOINTING", "false")
    assert gradient_checkpointing(TrainConfig()) is True
    monkeypatch.setenv("FSDP_ACTIVATION_CHECKPOINTING", "true")
    assert gradient_checkpointing(TrainConfig()) is False
    assert gradient_checkpointing(TrainConfig(gradient_checkpointing=False)) is False
    with pytest.raises(MaltError, match="train.gradient_checkpointing: .*fsdp_activation_checkpointing"):
        gradient_checkpointing(TrainConfig(gradient_checkpointing=True))


def test_lora_keeps_the_base_dtype_when_asked(tiny_model):
    """Under ZeRO-3 (`same_dtype`) a bf16 base gets bf16 LoRA weights; otherwise PEFT's fp32."""
    import torch

    from malt.train.lora import attach_lora, load_model

    def lora_dtypes(same_dtype: bool) -> set:
        model = attach_lora(load_model(str(tiny_model), bf16=True), TrainConfig(),
                            same_dtype=same_dtype)
        return {p.dtype for n, p in model.named_parameters() if "lora_" in n}

    assert lora_dtypes(same_dtype=True) == {torch.bfloat16}
    assert lora_dtypes(same_dtype=False) == {torch.float32}
