"""A five-role chain, G -> V -> R -> V -> R, through generate, label, train and eval on the
embedded model: the second verifier shares the first one's trained adapter, the second
refiner has its own."""

from __future__ import annotations

import json

import pytest

from conftest import arith_splits
from malt.cli import main as cli_main
from malt.config import load_config
from malt.runspec import CHECKS

CHAIN = ("chain=[generator, verifier, refiner, "
         "{name: verifier2, template: verifier, model: verifier}, "
         "{name: refiner2, template: refiner}]")


@pytest.fixture(scope="module")
def five_role_run(tmp_path_factory):
    root = arith_splits(tmp_path_factory.mktemp("five"), train=6)
    sampling = {"generator": 2, "verifier": 1, "refiner": 2, "verifier2": 1, "refiner2": 1}
    overrides = [
        f"run_dir={root / 'run'}", "task.name=arith", f"task.train={root / 'train.jsonl'}",
        f"task.test={root / 'test.jsonl'}", "models.base=embedded", "backend.device=cpu",
        "backend.dtype=float32", CHAIN,
        *[f"generate.{r}.n={n}" for r, n in sampling.items()],
        *[f"generate.{r}.temperature=0.7" for r in sampling],
        *[f"generate.{r}.max_new_tokens=96" for r in sampling],
        "train.max_steps=2", "train.batch_size=4", "train.max_length=512",
        "eval.seeds=[0]", "eval.chains=2", "eval.temperature=0.7", "eval.max_new_tokens=96",
        "eval.methods=[ma, malt_no_mv, malt, malt_g]",
    ]
    for stage in ("generate", "label", "train", "eval"):
        assert cli_main([stage, "--no-progress", *overrides] if stage != "label"
                        else [stage, *overrides]) == 0, stage
    return root / "run", load_config(None, overrides, checks=CHECKS)


def test_trees_have_five_levels(five_role_run):
    run, _ = five_role_run
    row = json.loads((run / "generate" / "trees-00000.jsonl").read_text().splitlines()[0])
    assert row["branching"] == {"n_g": 2, "n_v": 1, "n_r": 2, "n_v2": 1, "n_r2": 1}
    roles = [n["role"] for n in row["nodes"]]
    assert roles == ["generator"] * 2 + ["verifier"] * 2 + ["refiner"] * 4 + \
        ["verifier2"] * 4 + ["refiner2"] * 4
    leaf = row["nodes"][-1]
    assert leaf["id"].endswith("/g1/v0/r1/v20/r20")


def test_role_data_per_model_slot(five_role_run):
    run, _ = five_role_run
    summary = json.loads((run / "label" / "summary.json").read_text())
    assert list(summary["positives"]) == ["generator", "verifier", "refiner", "verifier2",
                                          "refiner2"]
    assert list(summary["sft_rows"]) == ["generator", "verifier", "refiner", "refiner2"]
    assert summary["leaves"] == 6 * 4
    files = sorted(p.name for p in (run / "label").glob("*_*.jsonl"))
    assert files == ["dpo_refiner.jsonl", "dpo_refiner2.jsonl", "dpo_verifier.jsonl",
                     "sft_generator.jsonl", "sft_refiner.jsonl", "sft_refiner2.jsonl",
                     "sft_verifier.jsonl"]
    # The shared verifier slot's SFT set holds both verifiers' positives.
    rows = [json.loads(x) for x in (run / "label" / "sft_verifier.jsonl").read_text().splitlines()]
    assert len(rows) == summary["positives"]["verifier"] + summary["positives"]["verifier2"]


def test_one_adapter_per_model_slot_and_eval_runs_the_five_roles(five_role_run):
    run, _ = five_role_run
    models = json.loads((run / "train" / "models.json").read_text())
    assert set(models) == {"generator", "verifier", "refiner", "refiner2"}
    results = json.loads((run / "eval" / "results.json").read_text())
    malt = results["methods"]["malt"]
    assert malt["chain"] == "G -> V -> R -> V2 -> R2"
    assert list(malt["turnwise"]) == ["generator", "verifier", "refiner", "verifier2",
                                      "refiner2"]
    assert results["methods"]["malt_g"]["roles"] == ["generator"]
    record = json.loads((run / "eval" / "records" / "malt" / "seed0.jsonl")
                        .read_text().splitlines()[0])
    chain = record["chains"][0]
    assert set(chain) >= {"generator", "verifier", "refiner", "verifier2", "refiner2",
                          "refiner_answer", "answer", "correct"}
    # malt and malt_g share chains: malt_g's answer is malt's generator answer.
    g_only = json.loads((run / "eval" / "records" / "malt_g" / "seed0.jsonl")
                        .read_text().splitlines()[0])
    assert [c["answer"] for c in g_only["chains"]] == [
        c["generator_answer"] for c in record["chains"]]
