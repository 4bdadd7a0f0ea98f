"""`malt iterate` on the embedded world: rounds sample with the previous round's agents,
follow the threshold schedule, take fresh questions, and a SIGKILL in round 2 resumes to the
same bytes as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TESTS_DIR, arith_splits
from malt.config import load_config
from malt.runspec import CHECKS
from malt.stages import iterate

SRC = TESTS_DIR.parent / "src"


def overrides(root: Path, run: str) -> list[str]:
    return [
        f"run_dir={root / run}", "task.name=arith", f"task.train={root / 'train.jsonl'}",
        f"task.test={root / 'test.jsonl'}", "task.limit_train=4", "models.base=embedded",
        "backend.device=cpu", "backend.dtype=float32", "generate.chunk_size=2",
        *[f"generate.{r}.{k}" for r in ("generator", "verifier", "refiner")
          for k in ("n=2", "temperature=0.7", "max_new_tokens=96")],
        "train.max_steps=2", "train.batch_size=4", "train.max_length=512",
        "eval.seeds=[0]", "eval.chains=2", "eval.temperature=0.7", "eval.max_new_tokens=96",
        "eval.methods=[sa_mv,malt]", "iterate.rounds=2", "iterate.thresholds=[0.5,0.7]",
        "iterate.fresh_questions=true", "iterate.stop_collapsed=null",
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return arith_splits(tmp_path_factory.mktemp("iterate"))


@pytest.fixture(scope="module")
def finished(data) -> tuple[Path, dict]:
    cfg = load_config(None, overrides(data, "run"), checks=CHECKS)
    return data / "run", iterate.run(cfg, progress=False)


def test_rounds_follow_the_schedule_and_take_fresh_questions(finished):
    run, out = finished
    assert [r["round"] for r in out["rounds"]] == [1, 2]
    assert [r["threshold"] for r in out["rounds"]] == [0.5, 0.7]
    for r in (1, 2):
        label_cfg = (run / f"round-{r}" / "label" / "config.yaml").read_text()
        assert f"threshold: {0.5 if r == 1 else 0.7}" in label_cfg
    questions = [{json.loads(line)["problem"]["id"] for line in p.read_text().splitlines()}
                 for r in (1, 2) for p in sorted((run / f"round-{r}" / "generate").glob("tr*"))]
    round1, round2 = questions[0] | questions[1], questions[2] | questions[3]
    assert len(round1) == len(round2) == 4 and not round1 & round2
    table = (run / "report" / "rounds.md").read_text()
    assert "| 1 | 0.5 |" in table and "| 2 | 0.7 |" in table and "malt" in table
    assert (run / "report" / "rounds.png").stat().st_size > 5_000


def test_round_2_samples_with_round_1s_final_agents(finished):
    run, _ = finished
    manifest = json.loads((run / "round-2" / "generate" / "manifest.json").read_text())
    adapters = {k: v for k, v in manifest["consumed"].items() if k.endswith("adapter")}
    assert set(adapters) == {"the generator's adapter", "the verifier's adapter",
                             "the refiner's adapter"}
    assert all(v for v in adapters.values())
    first = json.loads((run / "round-1" / "generate" / "manifest.json").read_text())
    assert not [k for k in first["consumed"] if k.endswith("adapter")]
    # Round 2's SFT continues round 1's final adapter (iterate.train_from: previous).
    for slot in ("generator", "verifier", "refiner"):
        inputs = json.loads((run / "round-2" / "train" / slot / "metrics.json").read_text())
        assert inputs["inputs"]["the adapter SFT starts from"]
        r1 = json.loads((run / "round-1" / "train" / slot / "metrics.json").read_text())
        assert "the adapter SFT starts from" not in r1["inputs"]


def _bytes(run: Path) -> dict[str, bytes]:
    keep = ("generate/trees-", "label/sft_", "label/dpo_", "label/labels", "eval/records/")
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*.jsonl"))
            if any(k in str(p.relative_to(run)).split("round-", 1)[-1] for k in keep)}


def test_a_sigkill_in_round_2_resumes_to_identical_bytes(data, finished):
    run, _ = finished
    args = [sys.executable, "-m", "malt", "iterate", "--no-progress", *overrides(data, "killed")]
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    target = data / "killed" / "round-2" / "generate" / "trees-00000.jsonl"
    deadline = time.time() + 300
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.exists(), "round 2 had not started when the run ended"
    assert not (data / "killed" / "round-2" / "eval" / "results.json").exists()
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed, straight = _bytes(data / "killed"), _bytes(run)
    assert resumed.keys() == straight.keys() and len(resumed) > 10
    assert [k for k in resumed if resumed[k] != straight[k]] == []
