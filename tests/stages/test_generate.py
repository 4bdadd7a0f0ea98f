"""`malt generate`: shards, manifest, resume, refusal of a changed config, SIGKILL safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import TESTS_DIR
from malt.config import load_config
from malt.errors import MaltError
from malt.io import read_jsonl, read_trees
from malt.records import check_shape
from malt.stages import generate
from toy_task import FakeBackend

SRC = TESTS_DIR.parent / "src"


def _overrides(run_dir, data, model="unused", tokens=8, chunk=2):
    return [
        f"run_dir={run_dir}",
        "seed=5",
        "task.name=toy",
        f"task.train={data}",
        f"models.base={model}",
        "backend.device=cpu",
        f"generate.chunk_size={chunk}",
        *[f"generate.{r}.n=2" for r in ("generator", "verifier", "refiner")],
        *[f"generate.{r}.max_new_tokens={tokens}" for r in ("generator", "verifier", "refiner")],
    ]


def _shards(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run_dir / "generate").glob("trees-*.jsonl"))}


def test_writes_one_valid_shard_per_chunk_with_config_and_manifest(gen_task, toy_data, tmp_path):
    cfg = load_config(None, _overrides(tmp_path / "run", toy_data, chunk=3))
    backend = FakeBackend()
    summary = generate.run(cfg, backend=backend, progress=False)
    out = tmp_path / "run" / "generate"
    assert sorted(_shards(tmp_path / "run")) == [
        "trees-00000.jsonl",
        "trees-00001.jsonl",
        "trees-00002.jsonl",
    ]
    trees = list(read_trees(out))
    assert len(trees) == 8 and len({t.problem.id for t in trees}) == 8
    for t in trees:
        check_shape(t)
    assert [len(list(read_jsonl(p))) for p in sorted(out.glob("trees-*"))] == [3, 3, 2]
    assert summary["trees"] == 8 and summary["leaves"] == 64 and summary["tokens"] == 8 * 14 * 5
    assert summary["generated_now"] == {"generations": 112, "tokens": 560}
    assert 0 <= summary["mean_leaf_reward"] <= 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["seed"] == 5
    assert manifest["dataset"]["sha256"] and manifest["versions"]["torch"]
    assert manifest["shards"]["trees-00002.jsonl"]["trees"] == 2
    assert manifest["summary"]["leaves"] == 64
    assert yaml.safe_load((out / "config.yaml").read_text())["generate"]["chunk_size"] == 3


def test_resume_regenerates_only_missing_shards_identically(gen_task, toy_data, tmp_path):
    cfg = load_config(None, _overrides(tmp_path / "run", toy_data))
    generate.run(cfg, backend=FakeBackend(), progress=False)
    before = _shards(tmp_path / "run")
    (tmp_path / "run" / "generate" / "trees-00002.jsonl").unlink()
    (tmp_path / "run" / "generate" / ".trees-00003.jsonl.abc.tmp").write_text("{half a line")
    backend = FakeBackend()
    generate.run(cfg, backend=backend, progress=False)
    assert [n for _, n in backend.calls] == [2, 4, 8]  # one chunk of two questions
    assert _shards(tmp_path / "run") == before
    assert not list((tmp_path / "run" / "generate").glob(".*.tmp"))
    backend = FakeBackend()
    generate.run(cfg, backend=backend, progress=False)  # complete: nothing to do
    assert backend.calls == []


def test_a_larger_limit_extends_a_finished_run(gen_task, toy_data, tmp_path):
    base = _overrides(tmp_path / "run", toy_data)
    generate.run(load_config(None, base + ["task.limit_train=5"]), backend=FakeBackend(), progress=False)
    first = _shards(tmp_path / "run")
    assert len(first) == 3  # 2 + 2 + 1 questions
    backend = FakeBackend()
    summary = generate.run(load_config(None, base + ["task.limit_train=8"]), backend=backend, progress=False)
    assert [n for role, n in backend.calls if role == "generator"] == [2, 2]  # chunks 2 and 3
    after = _shards(tmp_path / "run")
    assert {k: after[k] for k in ("trees-00000.jsonl", "trees-00001.jsonl")} == {
        k: first[k] for k in ("trees-00000.jsonl", "trees-00001.jsonl")
    }
    assert summary["trees"] == 8


@pytest.mark.parametrize("limit, kept", [(5, [2, 2, 1]), (4, [2, 2])])
def test_a_smaller_limit_drops_the_trees_outside_the_plan(gen_task, toy_data, tmp_path, limit, kept):
    """Shrinking task.limit_train: no shard outside the plan is left for `malt label` to read."""
    from malt.stages import label

    base = _overrides(tmp_path / "run", toy_data)
    generate.run(load_config(None, base), backend=FakeBackend(), progress=False)
    assert len(_shards(tmp_path / "run")) == 4
    before = _shards(tmp_path / "run")
    cfg = load_config(None, base + [f"task.limit_train={limit}"])
    summary = generate.run(cfg, backend=FakeBackend(), progress=False)
    out = tmp_path / "run" / "generate"
    assert [len(list(read_jsonl(p))) for p in sorted(out.glob("trees-*"))] == kept
    assert summary["trees"] == limit and summary["removed_shards"] == 4 - len(kept)
    assert _shards(tmp_path / "run")["trees-00000.jsonl"] == before["trees-00000.jsonl"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["shards"]) == sorted(_shards(tmp_path / "run"))
    assert label.run(cfg)["trees"] == limit


def test_a_changed_config_is_refused_unless_restarting(gen_task, toy_data, tmp_path):
    generate.run(
        load_config(None, _overrides(tmp_path / "run", toy_data)),
        backend=FakeBackend(),
        progress=False,
    )
    changed = load_config(
        None, _overrides(tmp_path / "run", toy_data) + ["generate.verifier.temperature=0.9"]
    )
    with pytest.raises(MaltError, match=r"config.yaml: .*generate\.verifier\.temperature.*--restart"):
        generate.run(changed, backend=FakeBackend(), progress=False)
    # Settings that do not change the samples (batch size) resume fine.
    generate.run(
        load_config(None, _overrides(tmp_path / "run", toy_data) + ["backend.batch_size=3"]),
        backend=FakeBackend(),
        progress=False,
    )
    summary = generate.run(changed, restart=True, backend=FakeBackend(), progress=False)
    assert summary["trees"] == 8 and summary["generated_now"]["generations"] == 112
    saved = yaml.safe_load((tmp_path / "run" / "generate" / "config.yaml").read_text())
    assert saved["generate"]["verifier"]["temperature"] == 0.9


def test_a_changed_local_model_is_refused_unless_restarting(gen_task, toy_data, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 8}')
    cfg = load_config(None, _overrides(tmp_path / "run", toy_data, model=model))
    generate.run(cfg, backend=FakeBackend(), progress=False)
    (model / "config.json").write_text('{"hidden_size": 16}')  # same path, another model
    with pytest.raises(MaltError, match=r"config.yaml: the generator model changed"):
        generate.run(cfg, backend=FakeBackend(), progress=False)
    summary = generate.run(cfg, restart=True, backend=FakeBackend(), progress=False)
    assert summary["trees"] == 8 and summary["generated_now"]["generations"] == 112


def test_missing_training_data_is_a_malt_error(gen_task, tmp_path):
    cfg = load_config(None, _overrides(tmp_path / "run", tmp_path / "none.jsonl"))
    with pytest.raises(MaltError, match="none.jsonl"):
        generate.run(cfg, backend=FakeBackend(), progress=False)


# Runs the real CLI (`malt generate ...`) with the toy task registered.
LAUNCHER = (
    "import sys; from malt import cli, tasks; tasks.TASKS['toy'] = 'toy_task'; "
    "raise SystemExit(cli.main(sys.argv[1:]))"
)


def _spawn(overrides) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS_DIR)]),
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, "generate", "--no-progress", *overrides],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_when(proc: subprocess.Popen, ready, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"finished before the kill point: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_sigkill_at_several_points_then_resume_equals_an_uninterrupted_run(
    gen_task, toy_data, tiny_model, tmp_path
):
    reference = load_config(None, _overrides(tmp_path / "ref", toy_data, tiny_model))
    generate.run(reference, progress=False)
    want = _shards(tmp_path / "ref")
    assert len(want) == 4
    killed = _overrides(tmp_path / "killed", toy_data, tiny_model)
    out = tmp_path / "killed" / "generate"
    kill_points = [
        lambda: (out / "config.yaml").exists(),  # while loading or sampling the first chunk
        lambda: (out / "trees-00001.jsonl").exists(),  # mid-run, second chunk just written
        lambda: (out / "trees-00002.jsonl").exists(),
    ]
    for ready in kill_points:
        _kill_when(_spawn(killed), ready)
    assert len(_shards(tmp_path / "killed")) < 4
    final = _spawn(killed)
    stdout, stderr = final.communicate(timeout=120)
    assert final.returncode == 0, stderr[-2000:]
    assert '"trees": 8' in stdout
    assert _shards(tmp_path / "killed") == want  # same bytes: same ids, no duplicates, none missing
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_cli_reports_a_changed_config_in_one_sentence(gen_task, toy_data, tmp_path):
    run = tmp_path / "run"
    generate.run(load_config(None, _overrides(run, toy_data)), backend=FakeBackend(), progress=False)
    proc = _spawn(_overrides(run, toy_data) + ["seed=6"])
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert stderr.strip().startswith("malt generate: error:")
    assert "the setting seed changed since this run was started" in stderr
    assert "--restart" in stderr and "Traceback" not in stderr


REAL_TASKS = {
    "gsm8k": "gsm8k/train.jsonl",
    "math": "math/train.jsonl",
    "csqa": "commonsenseqa/train_rand_split.jsonl",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REAL_TASKS))
def test_real_task_trees_with_the_hf_backend_on_a_tiny_model(name, tiny_model, tmp_path):
    from conftest import shared_data
    from malt.tasks import get_task

    data = shared_data()
    if not data.is_dir():
        pytest.skip("public datasets not found (set MALT_SHARED_DATA)")
    cfg = load_config(
        None,
        [
            f"run_dir={tmp_path / 'run'}",
            f"task.name={name}",
            f"task.train={data / REAL_TASKS[name]}",
            "task.limit_train=2",
            f"models.base={tiny_model}",
            "backend.device=cpu",
            *[f"generate.{r}.n=2" for r in ("generator", "verifier", "refiner")],
            *[f"generate.{r}.max_new_tokens=6" for r in ("generator", "verifier", "refiner")],
        ],
    )
    summary = generate.run(cfg, progress=False)
    task = get_task(name)
    trees = list(read_trees(tmp_path / "run" / "generate"))
    assert summary["trees"] == 2 and summary["leaves"] == 16 and len(trees) == 2
    for tree in trees:
        check_shape(tree)
        for node in tree.nodes:
            assert node.num_tokens is not None and 1 <= node.num_tokens <= 6
            assert node.finish_reason in ("stop", "length")
            want = task.extract_answer(node.completion) if node.role != "verifier" else None
            assert node.answer == want
        g = tree.by_role("generator")[0]
        assert g.prompt == task.messages("generator", tree.problem)
        r = tree.nodes[-1]
        v = next(n for n in tree.nodes if n.id == r.parent_id)
        assert r.prompt == task.messages(
            "refiner",
            tree.problem,
            answer=next(n for n in tree.nodes if n.id == v.parent_id).completion,
            critique=v.completion,
        )


class _CountingBackend(FakeBackend):
    """The toy backend, also reporting prompt tokens, and counting what it reported."""

    def __init__(self):
        super().__init__()
        self.reported: dict[str, list[int]] = {}

    def generate(self, role, prompts, params, seeds):
        from dataclasses import replace

        out = super().generate(role, prompts, params, seeds)
        counts = self.reported.setdefault(role, [0, 0])
        rows = []
        for messages, completions in zip(prompts, out, strict=True):
            n_prompt = len(messages[-1]["content"])
            counts[0] += n_prompt
            counts[1] += sum(c.num_tokens for c in completions)
            rows.append([replace(c, prompt_tokens=n_prompt) for c in completions])
        return rows


def test_the_token_ledger_equals_what_the_backend_reported(gen_task, toy_data, tmp_path):
    run = tmp_path / "run"
    cfg = load_config(None, _overrides(run, toy_data, chunk=3))
    backend = _CountingBackend()
    summary = generate.run(cfg, backend=backend, progress=False)
    ledger = summary["ledger"]
    assert {r: [c["prompt_tokens"], c["completion_tokens"]] for r, c in ledger.items()} == \
        backend.reported
    assert ledger["verifier"]["prompts"] == 8 * 2 and ledger["verifier"]["samples"] == 8 * 4
    manifest = json.loads((run / "generate" / "manifest.json").read_text())
    assert manifest["summary"]["ledger"] == ledger
    # Every node keeps its prompt's tokens, so the ledger can be recounted from the trees:
    # one prompt per (parent, role).
    prompts = {(t.problem.id, n.parent_id, n.role): n.prompt_tokens
               for t in read_trees(run / "generate") for n in t.nodes}
    assert sum(prompts.values()) == sum(c[0] for c in backend.reported.values())
