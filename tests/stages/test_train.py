"""`malt train`: three roles end to end, empty datasets, resume after interruption, accelerate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from malt import cli
from malt.chain import DEFAULT
from malt.config import load_config
from malt.errors import MaltError
from malt.stages import train
from malt.train.synthetic import sft_rows, write_label_dir

SRC = Path(__file__).resolve().parents[2] / "src"
ROOT = SRC.parent


def write_config(tmp_path: Path, base: Path, **train_kw) -> Path:
    """A run config for a tiny model: small batches, few epochs, frequent checkpoints."""
    section = {"batch_size": 4, "logging_steps": 1, "max_length": 128, "save_steps": 2,
               "generator": {"sft_epochs": 1, "dpo": False, "sft_learning_rate": 2e-3},
               "verifier": {"sft_epochs": 1, "dpo_epochs": 1, "sft_learning_rate": 2e-3,
                            "dpo_learning_rate": 2e-3},
               "refiner": {"sft_epochs": 1, "dpo_epochs": 1, "sft_learning_rate": 2e-3,
                           "dpo_learning_rate": 2e-3}}
    section.update(train_kw)
    cfg = {"run_dir": str(tmp_path / "run"), "models": {"base": str(base)}, "train": section}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def adapter(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "adapter_model.safetensors")


def changed(a: dict, b: dict) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_train_all_roles_from_the_cli(tiny_model, tmp_path, capsys):
    write_label_dir(tmp_path / "run" / "label")
    config = write_config(tmp_path, tiny_model)
    assert cli.main(["train", "--config", str(config), "--role", "all", "train.merge=true"]) == 0
    printed = capsys.readouterr()
    summary = json.loads(printed.out)  # the summary alone: no TRL log dicts on stdout
    # One bar per role and phase with its loss; no tokenising or weight-loading bars.
    bars = {line.split(":")[0] for line in printed.err.replace("\r", "\n").splitlines()
            if "step/s" in line and "loss=" in line}
    assert bars == {"generator SFT", "verifier SFT", "verifier DPO", "refiner SFT", "refiner DPO"}
    assert "'loss'" not in printed.err and "Tokenizing" not in printed.err
    assert "Loading weights" not in printed.err
    out = tmp_path / "run" / "train"
    models = json.loads((out / "models.json").read_text())
    assert set(models) == {"generator", "verifier", "refiner"}
    for role in models:
        final, sft = Path(models[role]["final"]["adapter"]), Path(models[role]["sft"]["adapter"])
        assert models[role]["final"]["model"] == str(tiny_model)
        assert final == Path("train", role, "final") and sft == Path("train", role, "sft")
        final, sft = tmp_path / "run" / final, tmp_path / "run" / sft
        assert all(v.abs().sum() > 0 for k, v in adapter(sft).items() if "lora_B" in k)
        metrics = json.loads((out / role / "metrics.json").read_text())
        assert metrics["complete"] and metrics["sft"]["status"] == "trained"
        assert summary["roles"][role]["sft"]["status"] == "trained"
    # V and R: DPO moved the policy away from SFT; G has no DPO, so final is its SFT adapter.
    for role in ("verifier", "refiner"):
        dpo = json.loads((out / role / "metrics.json").read_text())["dpo"]
        assert dpo["status"] == "trained" and dpo["reference"] == "sft" and dpo["beta"] == 0.2
        assert {"rewards/margins", "rewards/accuracies"} <= set(dpo)
        assert changed(adapter(out / role / "final"), adapter(out / role / "sft"))
    assert not changed(adapter(out / "generator" / "final"), adapter(out / "generator" / "sft"))
    assert (out / "manifest.json").is_file() and (out / "config.yaml").is_file()
    loadable = resolved(models, tmp_path / "run")
    assert_loads_like_a_backend(loadable["refiner"]["final"])
    assert_merged_equals_adapter(loadable["verifier"])
    assert loadable["verifier"]["merged"]["model"] == str((out / "verifier" / "merged").resolve())


def resolved(models: dict, run_dir: Path) -> dict:
    """models.json entries as the ModelSpec dicts a backend loads (paths resolved)."""
    import dataclasses

    from malt.artifacts import from_stored

    return {role: {stage: dataclasses.asdict(from_stored(spec, run_dir))
                   for stage, spec in entry.items()} for role, entry in models.items()}


def assert_merged_equals_adapter(entry: dict) -> None:
    """`train.merge`: the merged model computes what base + final adapter computes."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(entry["merged"]["model"]).eval()
    assert entry["merged"]["adapter"] is None
    final = entry["final"]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(final["model"]),
                                      final["adapter"]).eval()
    ids = torch.tensor([[7, 8, 9, 10, 11, 12]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, model(ids).logits, rtol=1e-4, atol=1e-4)


def assert_loads_like_a_backend(entry: dict) -> None:
    """A models.json entry is a ModelSpec: base model + PEFT adapter that can generate."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from malt.backends.base import ModelSpec

    spec = ModelSpec(**entry)
    tok = AutoTokenizer.from_pretrained(spec.model)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(spec.model),
                                      spec.adapter).eval()
    text = tok.apply_chat_template([{"role": "user", "content": "1 + 1?"}], tokenize=False,
                                   add_generation_prompt=True)
    batch = tok([text], return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape[1] > batch["input_ids"].shape[1]


@pytest.mark.slow
def test_empty_datasets_keep_the_previous_policy(tiny_model, tmp_path, caplog):
    label = write_label_dir(tmp_path / "run" / "label", n_sft=4, n_dpo=4)
    (label / "dpo_verifier.jsonl").write_text("")  # every sibling had the same label
    (label / "sft_refiner.jsonl").write_text("")  # no positive refinements at all
    (label / "dpo_refiner.jsonl").write_text("")
    cfg = load_config(write_config(tmp_path, tiny_model))
    summary = train.run(cfg, roles=["verifier", "refiner"])
    verifier, refiner = summary["roles"]["verifier"], summary["roles"]["refiner"]
    assert verifier["dpo"]["status"] == "skipped"
    assert "keeps its SFT result" in verifier["dpo"]["reason"]
    out = tmp_path / "run" / "train"
    assert not changed(adapter(out / "verifier" / "final"), adapter(out / "verifier" / "sft"))
    assert refiner["sft"]["status"] == "skipped" and refiner["dpo"]["status"] == "skipped"
    models = json.loads((out / "models.json").read_text())
    assert models["refiner"]["final"] == {"model": str(tiny_model), "adapter": None}
    assert "no preference pairs" in caplog.text and "no SFT rows" in caplog.text


class Interrupt:
    """A trainer callback that stops the run like Ctrl-C once `phase`'s trainer reaches `step`."""

    def __init__(self, run_dir_name: str, step: int):
        from transformers import TrainerCallback

        outer = self

        class _Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                here = Path(args.output_dir).name == outer.run_dir_name
                if here and state.global_step == outer.step:
                    raise KeyboardInterrupt

        self.run_dir_name, self.step, self.callback = run_dir_name, step, _Callback()


@pytest.mark.slow
def test_resume_after_interruption_matches_an_uninterrupted_run(tiny_model, tmp_path):
    write_label_dir(tmp_path / "a" / "run" / "label", n_sft=8, n_dpo=12)
    write_label_dir(tmp_path / "b" / "run" / "label", n_sft=8, n_dpo=12)
    straight = load_config(write_config(tmp_path / "a", tiny_model))
    train.run(straight, roles=["verifier"])

    cfg = load_config(write_config(tmp_path / "b", tiny_model))
    stop = Interrupt("dpo_checkpoints", step=3)  # checkpoints are saved every 2 steps
    with pytest.raises(KeyboardInterrupt):
        train.run(cfg, roles=["verifier"], callbacks=[stop.callback])
    role_dir = tmp_path / "b" / "run" / "train" / "verifier"
    work = role_dir.with_name("verifier.partial")  # unfinished work stays beside the result
    assert (work / "sft").is_dir() and not (work / "final").exists() and not role_dir.exists()
    assert (work / "dpo_checkpoints" / "checkpoint-2").is_dir()
    summary = train.run(cfg, roles=["verifier"])  # a rerun resumes by default
    assert summary["roles"]["verifier"]["sft"]["status"] == "resumed"
    assert not work.exists()
    last = role_dir / "dpo_checkpoints" / "checkpoint-3"
    state = json.loads((last / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and summary["roles"]["verifier"]["dpo"]["steps"] == 3

    expected = adapter(tmp_path / "a" / "run" / "train" / "verifier" / "final")
    resumed = adapter(role_dir / "final")
    for key in expected:
        torch.testing.assert_close(resumed[key], expected[key], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_label_then_train_on_synthetic_trees(tiny_model, tmp_path):
    """The label stage's real output (Parquet here) is what `malt train` reads."""
    from malt.io import write_trees
    from malt.records import Branching, Problem
    from malt.stages import label
    from malt.synthetic import synthetic_forest

    problems = [Problem(id=f"gsm8k-t{i}", question=f"What is {i} + 3?", answer=str(i + 3),
                        task="gsm8k") for i in range(6)]
    run = tmp_path / "run"
    write_trees(run / "generate" / "trees-00000.jsonl",
                synthetic_forest(problems, Branching(2, 2, 2), seed=0))
    cfg = load_config(write_config(tmp_path, tiny_model, max_steps=1, max_length=1024, batch_size=2),
                      ["task.name=gsm8k", "data.format=parquet"])
    stats = label.run(cfg)
    summary = train.run(cfg)
    for role in ("generator", "verifier", "refiner"):
        sft = summary["roles"][role]["sft"]
        assert sft["status"] == "trained" and sft["steps"] == 1, (role, stats)
    models = json.loads((run / "train" / "models.json").read_text())
    assert all((run / models[r]["final"]["adapter"]).is_dir() for r in models)


def finished_training(run_dir: Path) -> dict[str, bytes]:
    """An earlier, finished training of every role (fake adapters); returns the train dir's bytes."""
    out = run_dir / "train"
    models = {}
    for role in ("generator", "verifier", "refiner"):
        for stage in ("sft", "final"):
            (out / role / stage).mkdir(parents=True)
            (out / role / stage / "adapter_config.json").write_text('{"r": 8}')
            (out / role / stage / "adapter_model.safetensors").write_bytes(role.encode() * 8)
        (out / role / "metrics.json").write_text(json.dumps(
            {"role": role, "complete": True, "sft": {"status": "trained"},
             "dpo": {"status": "trained"}}))
        models[role] = {s: {"model": "base", "adapter": f"train/{role}/{s}"}
                        for s in ("sft", "final")}
    (out / "models.json").write_text(json.dumps(models))
    return tree_bytes(out)


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("bad_role", ["generator", "refiner"])
def test_bad_role_data_stops_before_any_role_trains_and_keeps_the_old_result(
        bad_role, tmp_path, capsys):
    label = write_label_dir(tmp_path / "run" / "label")
    before = finished_training(tmp_path / "run")
    with open(label / f"sft_{bad_role}.jsonl", "a") as f:
        f.write('{"prompt": "not a message list", "completion": []}\n')
    config = write_config(tmp_path, tmp_path / "no-such-model")  # loading it would fail loudly
    assert cli.main(["train", "--config", str(config), "--role", "all"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("malt train: error: ") and err.count("\n") == 1
    assert f"sft_{bad_role}.jsonl:9: prompt: expected a list of messages" in err
    assert tree_bytes(tmp_path / "run" / "train") == before


def test_a_corrupt_models_json_is_an_error_and_stays_as_it_was(tmp_path, capsys):
    write_label_dir(tmp_path / "run" / "label")
    models = tmp_path / "run" / "train" / "models.json"
    models.parent.mkdir(parents=True)
    models.write_text('{"generator": {"sft": ')
    config = write_config(tmp_path, tmp_path / "no-such-model")
    assert cli.main(["train", "--config", str(config), "--role", "verifier"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("malt train: error: ") and err.count("\n") == 1
    assert str(models) in err and "not valid JSON" in err
    assert models.read_text() == '{"generator": {"sft": '
    assert not (tmp_path / "run" / "train" / "verifier").exists()


@pytest.mark.slow
def test_changed_role_data_is_never_kept_silently_and_a_retrain_replaces_only_when_done(
        tiny_model, tmp_path, capsys):
    label = write_label_dir(tmp_path / "run" / "label", n_sft=4, chain=DEFAULT.prefix(1))
    config = write_config(tmp_path, tiny_model, max_steps=2, save_steps=1)
    args = ["train", "--config", str(config), "--role", "generator", "--no-progress"]
    assert cli.main(args) == 0
    out = tmp_path / "run" / "train"
    models = json.loads((out / "models.json").read_text())
    # Paths inside the run dir are stored relative to it: a copied run dir uses its own.
    assert models["generator"]["final"] == {"model": str(tiny_model),
                                            "adapter": "train/generator/final"}
    first = tree_bytes(out)
    capsys.readouterr()
    with open(label / "sft_generator.jsonl", "a") as f:  # `malt label` wrote other data since
        f.write(json.dumps(sft_rows("generator", 5)[-1]) + "\n")
    for flags in (["--resume"], []):
        assert cli.main(args + flags) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "sft_generator.jsonl" in err and "--restart" in err
        assert tree_bytes(out) == first
    cfg = load_config(config)
    stop = Interrupt("sft_checkpoints", step=1)
    with pytest.raises(KeyboardInterrupt):  # a retrain cut short keeps the finished result
        train.run(cfg, roles=["generator"], restart=True, callbacks=[stop.callback],
                  progress=False)
    assert tree_bytes(out) == {**first, **{k: v for k, v in tree_bytes(out).items()
                                           if k.startswith("generator.partial/")}}
    summary = train.run(cfg, roles=["generator"], progress=False)  # resumes the retrain
    assert summary["roles"]["generator"]["sft"]["status"] == "trained"
    assert not (out / "generator.partial").exists()
    assert changed(adapter(out / "generator" / "final"),
                   load_file_bytes(first["generator/final/adapter_model.safetensors"]))
    assert json.loads((out / "models.json").read_text()) == models


def load_file_bytes(data: bytes) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    return load(data)


def test_missing_label_stage_is_one_clear_error(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "models": {"base": "m"}}))
    assert cli.main(["train", "--config", str(cfg), "--role", "verifier"]) == 2
    err = capsys.readouterr().err
    assert "label: no label stage output (run `malt label` first)" in err
    with pytest.raises(MaltError, match="models.generator: no model given"):
        (tmp_path / "run" / "label").mkdir(parents=True)
        train.run(load_config(None, [f"run_dir={tmp_path / 'run'}"]), roles=["generator"])


@pytest.mark.slow
def test_two_process_accelerate_launch_trains_a_valid_adapter(tiny_model, tmp_path):
    from peft import PeftModel

    from malt.train.lora import load_model

    write_label_dir(tmp_path / "run" / "label", n_sft=16, chain=DEFAULT.prefix(1))
    config = write_config(tmp_path, tiny_model, batch_size=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC),
           "ACCELERATE_DISABLE_RICH": "1"}
    # accelerate 1.x's `--cpu` launcher starts one process unless MPI is set up; the torchrun
    # launcher (`--multi_gpu`) starts two, and malt's TrainingArguments pick CPU + gloo when
    # there is no CUDA device.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
           "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "malt", "train", "--config", str(config), "--role", "generator"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count('"models":') == 1  # only the main process prints the summary
    out = tmp_path / "run" / "train"
    metrics = json.loads((out / "generator" / "metrics.json").read_text())
    # 16 rows, 2 per process and step, 2 processes: 4 optimiser steps in one epoch.
    assert metrics["sft"]["steps"] == 4
    weights = adapter(out / "generator" / "sft")
    assert all(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k)
    base = load_model(str(tiny_model), bf16=False)
    model = PeftModel.from_pretrained(base, out / "generator" / "final")
    assert list(model.peft_config) == ["default"]


def test_cli_flags():
    args = cli.build_parser().parse_args(["train", "--role", "verifier", "--resume", "seed=3"])
    assert (args.role, args.resume, args.overrides) == ("verifier", True, ["seed=3"])
    assert cli.build_parser().parse_args(["train"]).role == "all"


def test_an_unknown_role_is_named_with_the_chains_slots(tmp_path, capsys):
    (tmp_path / "run" / "label").mkdir(parents=True)
    assert cli.main(["train", "--role", "critic", f"run_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "--role: unknown model slot 'critic' (the chain's: generator, verifier, refiner)" in err
