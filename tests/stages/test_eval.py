"""`malt eval` with the toy task and a fake backend: every method, resume, leakage, errors."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from malt.chain import DEFAULT_NAMES as ROLES
from malt.config import MethodConfig, load_config
from malt.errors import MaltError
from malt.evaluate import render
from malt.io import read_jsonl, sha256_file, write_jsonl, write_trees
from malt.records import Branching, Node, Tree
from malt.runspec import CHECKS
from malt.stages import eval as eval_stage
from malt.stages import report

_spec = importlib.util.spec_from_file_location(
    "eval_fakes", Path(__file__).resolve().parents[1] / "evaluate" / "fakes.py")
fakes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fakes)
TOY, FakeBackend, toy_rows = fakes.TOY, fakes.FakeBackend, fakes.toy_rows


def adapter(path: Path) -> str:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text("{}")
    return str(path)


def make_run(tmp_path, n=12, methods=None, **eval_overrides):
    """A run dir with a toy test file and a train/models.json pointing at fake adapters."""
    test = tmp_path / "test.jsonl"
    write_jsonl(test, toy_rows(n))
    run_dir = tmp_path / "run"
    models = {role: {stage: {"model": "base-model",
                             "adapter": adapter(run_dir / "train" / role / stage)}
                     for stage in ("sft", "final")}
              for role in ("generator", "verifier", "refiner")}
    (run_dir / "train" / "models.json").write_text(json.dumps(models))
    overrides = [f"run_dir={run_dir}", f"task.test={test}", "models.base=base-model",
                 "eval.bootstrap_samples=500", "eval.chunk_size=5"]
    if methods is not None:
        overrides.append(f"eval.methods=[{','.join(methods)}]")
    overrides += [f"eval.{k}={v}" for k, v in eval_overrides.items()]
    return load_config(None, overrides)


class Factory:
    """Builds FakeBackends and remembers them (and which models they were given)."""

    def __init__(self, fail_after=None):
        self.built, self.fail_after = [], fail_after

    def __call__(self, specs):
        self.built.append(FakeBackend(specs, self.fail_after))
        return self.built[-1]

    def calls(self):
        return [c for b in self.built for c in b.calls]


def records(cfg, method, seed):
    path = Path(cfg.run_dir) / "eval" / "records" / method / f"seed{seed}.jsonl"
    return [r for _, r in read_jsonl(path)]


def test_every_method_end_to_end(tmp_path):
    cfg = make_run(tmp_path)
    factory = Factory()
    res = eval_stage.run(cfg, task=TOY, backend_factory=factory)
    assert res["order"] == cfg.eval.methods and set(res["methods"]) == set(cfg.eval.methods)
    assert res["order"] == ["sa", "sa_mv", "ma", "ma_mv", "star_sa", "star_sa_mv", "star_ma",
                            "star_ma_mv", "malt_no_mv", "malt", "sa_mv9"]
    # One backend per source (base, sft, final) and one for the compute-matched SA + MV@9,
    # each closed; trained sources get adapters.
    has_adapter = [sorted({s.adapter is not None for s in b.specs.values()})
                   for b in factory.built]
    assert has_adapter == [[False], [True], [True], [False]]
    assert all(b.closed for b in factory.built)
    assert Path(factory.built[2].specs["verifier"].adapter).parts[-2:] == ("verifier", "final")
    for m in res["methods"].values():
        accs = [v["accuracy"] for v in m["per_seed"].values()]
        assert len(accs) == 3 and m["mean"] == pytest.approx(sum(accs) / 3)
        assert all(v["n"] == 12 for v in m["per_seed"].values())
    assert set(res["comparisons"]["vs"]) == set(cfg.eval.methods) - {"malt"}
    # SA + MV@9 votes over 9 generator samples: as many as MALT's 3 chains x 3 roles make calls.
    assert all(len(r["chains"]) == 9 and r["cost"]["calls"] == 9
               for r in records(cfg, "sa_mv9", 0))
    assert res["methods"]["malt"]["calls_per_question"] == 9
    assert res["methods"]["sa_mv"]["calls_per_question"] == 3
    assert res["comparisons"]["vs"]["sa"]["n_pairs"] == 36
    assert res["comparisons"]["vs"]["star_ma_mv"]["n_pairs"] == 36
    multi = {n for n, m in res["methods"].items() if m["multi_agent"]}
    assert "sa_mv9" not in multi
    assert multi == {"ma", "ma_mv", "star_ma", "star_ma_mv", "malt_no_mv", "malt"}
    assert {n for n, m in res["methods"].items() if "turnwise" in m} == multi
    # STaR MA + MV votes over the SFT chains whose chain 0 is STaR MA's and whose generator
    # steps STaR SA + MV votes over: one sampling, paired comparisons.
    for mv, ma, sa_mv in zip(records(cfg, "star_ma_mv", 1), records(cfg, "star_ma", 1),
                             records(cfg, "star_sa_mv", 1), strict=True):
        assert len(mv["chains"]) == 3 and mv["chains"][0] == ma["chains"][0]
        assert [c["generator"] for c in mv["chains"]] == [c["generator"] for c in sa_mv["chains"]]
    assert res["test_sha256"] == sha256_file(cfg.task.test)
    # The fake refiner repairs answers: MA beats SA on the same generator samples.
    assert res["methods"]["ma"]["mean"] > res["methods"]["sa"]["mean"]


def test_ablations_and_a_user_defined_method(tmp_path):
    cfg = make_run(tmp_path, methods=["malt", "malt_base_generator", "malt_base_verifier",
                                      "malt_base_refiner", "malt_g", "malt_gv", "malt_gr",
                                      "mine"], seeds="[0]")
    cfg.eval.define = {"mine": MethodConfig(roles=["generator", "refiner"],
                                            sources={"refiner": "sft"}, default="base",
                                            vote=False, label="base G, STaR R")}
    factory = Factory()
    res = eval_stage.run(cfg, task=TOY, backend_factory=factory)
    # One backend per distinct (roles, sources): malt_g and malt_gv read MALT's chains.
    kinds = [{role: (spec.adapter or "base").split("/")[-1] for role, spec in b.specs.items()}
             for b in factory.built]
    assert kinds == [
        {"generator": "final", "verifier": "final", "refiner": "final"},
        {"generator": "base", "verifier": "final", "refiner": "final"},
        {"generator": "final", "verifier": "base", "refiner": "final"},
        {"generator": "final", "verifier": "final", "refiner": "base"},
        {"generator": "final", "refiner": "final"},
        {"generator": "base", "refiner": "sft"}]
    m = res["methods"]
    assert m["malt_base_verifier"]["sources"] == {"generator": "final", "verifier": "base",
                                                  "refiner": "final"}
    assert m["malt_gr"]["chain"] == "G -> R" and m["mine"]["label"] == "base G, STaR R"
    assert m["malt_g"]["group"] == m["malt_gv"]["group"] == "ablation"
    # G+V: the toy verifier states no answer, so the chain answers with G's (paired with malt).
    for gv, g in zip(records(cfg, "malt_gv", 0), records(cfg, "malt_g", 0), strict=True):
        assert [c["answer"] for c in gv["chains"]] == [c["answer"] for c in g["chains"]]
    assert (cfg.stage_dir("eval") / "chains" / "g.final-r.final").is_dir()
    report = render.report_markdown([res])
    assert "## Ablations (the paper's Tables 4 and 5)" in report
    ablations = report.split("## Ablations")[1].split("\n## ")[0]
    assert "MALT, base V" in ablations and "MALT G+R" in ablations
    assert "MALT, base V" not in report.split("## Ablations")[0]


def test_the_token_ledger_equals_what_the_backend_reported(tmp_path):
    cfg = make_run(tmp_path, methods=["sa", "ma_mv", "malt", "sa_mv9"], seeds="[0, 1]")
    factory = Factory()
    res = eval_stage.run(cfg, task=TOY, backend_factory=factory)
    reported: dict = {}
    for backend in factory.built:
        for role, (prompt, completion) in backend.reported.items():
            into = reported.setdefault(role, [0, 0])
            into[0] += prompt
            into[1] += completion
    ledger = json.loads((cfg.stage_dir("eval") / "manifest.json").read_text())["ledger"]
    totals: dict = {}
    for by_role in ledger.values():
        for role, counts in by_role.items():
            into = totals.setdefault(role, [0, 0])
            into[0] += counts["prompt_tokens"]
            into[1] += counts["completion_tokens"]
    assert totals == reported and totals["generator"][1] > 0
    # Per question, a method's cost is its chains' share of that: MALT's tokens per question
    # are the final group's tokens over the questions of both seeds.
    final = ledger["final"]
    spent = sum(c["prompt_tokens"] + c["completion_tokens"] for c in final.values())
    assert res["methods"]["malt"]["tokens_per_question"] == pytest.approx(spent / 24)


def test_records_hold_chains_votes_and_correctness(tmp_path):
    cfg = make_run(tmp_path, methods=["sa", "sa_mv", "ma", "ma_mv"], seeds="[0]")
    res = eval_stage.run(cfg, task=TOY, backend_factory=Factory())
    sa, sa_mv, ma, ma_mv = (records(cfg, m, 0) for m in ("sa", "sa_mv", "ma", "ma_mv"))
    chains = [c for r in ma_mv for c in r["chains"]]
    summary = res["methods"]["ma_mv"]["per_seed"]["0"]
    assert summary["chains"] == 36 and "fixed" not in res["methods"]["sa"]["per_seed"]["0"]
    assert summary["fixed"] == sum(c["correct"] and not c["generator_correct"] for c in chains)
    assert summary["broken"] == sum(c["generator_correct"] and not c["correct"] for c in chains)
    assert summary["fixed"] > 0
    for r1, rv, rm, rmv in zip(sa, sa_mv, ma, ma_mv, strict=True):
        assert len(r1["chains"]) == len(rm["chains"]) == 1 and len(rv["chains"]) == 3
        # SA is the generator step of MA's chain 0; SA+MV votes over the generator answers.
        assert r1["chains"][0]["generator"] == rm["chains"][0]["generator"]
        assert set(rmv["chains"][0]) == {"generator", "generator_answer", "generator_correct",
                                         "verifier", "verifier_answer", "refiner", "answer",
                                         "correct"}
        assert all(c["verifier_answer"] is None for c in rmv["chains"])  # TOY's V states none
        assert rmv["turns"]["refiner"] == {"vote": rmv["vote"], "correct": rmv["correct"]}
        assert rmv["turns"]["generator"]["vote"] == rv["vote"] and "turns" not in rv
        for c in rmv["chains"]:
            right = c["answer"] is not None and int(c["answer"]) == int(rmv["gold"])
            assert c["correct"] == right
        for rec in (r1, rv, rm, rmv):
            vote, answers = rec["vote"], [c["answer"] for c in rec["chains"]]
            assert rec["correct"] == (vote is not None and int(vote) == int(rec["gold"]))
            assert rec["no_answer"] == (vote is None)
            if vote is None:
                assert all(a is None for a in answers)
            else:
                assert rec["votes"] == sum(a is not None and int(a) == int(vote) for a in answers)


# Per question, each chain's (G, V, R) answers; gold answers 1 and 4 (toy_rows(2)).
SCRIPT = {
    "What is 0+1?": [(2, 1, 1), (1, None, 1), (2, 2, 2)],
    "What is 1+3?": [(4, 5, 5), (4, 4, 4), (3, None, 4)],
}


def scripted(specs):
    return fakes.ScriptedBackend(SCRIPT, specs)


def turnwise(res, name):
    return {role: t and (t["mean"], t["std"]) for role, t in res["methods"][name]["turnwise"].items()}


def test_turnwise_accuracy_on_a_hand_built_case(tmp_path):
    cfg = make_run(tmp_path, n=2, methods=["sa", "sa_mv", "ma", "ma_mv"], seeds="[0,1]")
    task = dataclasses.replace(TOY, critique_answer_fn=fakes.critique_answer)
    res = eval_stage.run(cfg, task=task, backend_factory=scripted)
    # MA + MV, question 1: G votes 2 (wrong), V's 1 and 2 tie and "1" wins, R votes 1;
    # question 2: G votes 4, V's 5 and 4 tie and "4" wins, R votes 4.
    assert turnwise(res, "ma_mv") == {"generator": (0.5, 0.0), "verifier": (1.0, 0.0),
                                      "refiner": (1.0, 0.0)}
    # MA is chain 0 alone: (2, 1, 1) is right after V and R, (4, 5, 5) only after G.
    assert turnwise(res, "ma") == {"generator": (0.5, 0.0), "verifier": (0.5, 0.0),
                                   "refiner": (0.5, 0.0)}
    assert "turnwise" not in res["methods"]["sa"] and "turnwise" not in res["methods"]["sa_mv"]
    assert res["methods"]["sa_mv"]["mean"] == 0.5 and res["methods"]["ma_mv"]["mean"] == 1.0
    seed = res["methods"]["ma_mv"]["per_seed"]["1"]
    assert (seed["fixed"], seed["broken"], seed["verifier_answers"]) == (2, 1, 4)
    first = records(cfg, "ma_mv", 0)[0]
    assert [c["verifier_answer"] for c in first["chains"]] == ["1", None, "2"]
    assert first["turns"] == {"generator": {"vote": "2", "correct": False},
                              "verifier": {"vote": "1", "correct": True},
                              "refiner": {"vote": "1", "correct": True}}


def test_after_v_is_not_available_when_critiques_state_no_answer(tmp_path):
    cfg = make_run(tmp_path, n=2, methods=["sa", "ma_mv"], seeds="[0]")
    res = eval_stage.run(cfg, task=TOY, backend_factory=scripted)  # TOY: no critique_answer
    assert turnwise(res, "ma_mv") == {"generator": (0.5, 0.0), "verifier": None,
                                      "refiner": (1.0, 0.0)}
    assert res["methods"]["ma_mv"]["per_seed"]["0"]["verifier_answers"] == 0
    md = Path(report.run(cfg)["markdown"]).read_text()
    assert "| toy | MA + Majority Vote | 50.0 ± 0.0 | — | 100.0 ± 0.0 |" in md


def test_records_from_before_turnwise_votes_are_rebuilt_from_cached_chains(tmp_path):
    cfg = make_run(tmp_path, methods=["ma_mv"], seeds="[0]")
    eval_stage.run(cfg, task=TOY, backend_factory=Factory())
    path = Path(cfg.run_dir) / "eval" / "records" / "ma_mv" / "seed0.jsonl"
    old = [{k: v for k, v in r.items() if k != "turns"} for r in records(cfg, "ma_mv", 0)]
    write_jsonl(path, old)
    again = Factory()
    res = eval_stage.run(cfg, task=TOY, backend_factory=again)
    assert again.calls() == [] and all("turns" in r for r in records(cfg, "ma_mv", 0))
    assert res["methods"]["ma_mv"]["turnwise"]["generator"] is not None


def test_subsets_differ_per_seed_and_share_within_a_seed(tmp_path):
    cfg = make_run(tmp_path, n=20, methods=["sa", "malt"], subset_size=6)
    res = eval_stage.run(cfg, task=TOY, backend_factory=Factory())
    ids = {s: [r["id"] for r in records(cfg, "sa", s)] for s in (0, 1, 2)}
    assert all(len(v) == 6 for v in ids.values()) and ids[0] != ids[1]
    assert ids[0] == [r["id"] for r in records(cfg, "malt", 0)]
    assert res["questions_per_seed"] == {"0": 6, "1": 6, "2": 6} and res["test_questions"] == 20


def test_resume_keeps_finished_chunks_and_records(tmp_path):
    cfg = make_run(tmp_path, methods=["sa", "ma_mv"], seeds="[0]")
    # Dies on its 5th backend call: chunk 0 (3 calls) is saved, chunk 1 is not.
    with pytest.raises(RuntimeError):
        eval_stage.run(cfg, task=TOY, backend_factory=Factory(fail_after=4))
    cache = Path(cfg.run_dir) / "eval" / "chains" / "base" / "seed0"
    chunks = sorted(p.name for p in cache.iterdir())
    assert chunks == ["chunk-00000.jsonl"]
    again = Factory()
    eval_stage.run(cfg, task=TOY, backend_factory=again)
    assert [c[1] for c in again.calls() if c[0] == "generator"] == [5, 2]  # chunks 1 and 2 only
    done = Path(cfg.run_dir) / "eval" / "records" / "sa" / "seed0.jsonl"
    before = done.read_bytes()
    third = Factory()
    eval_stage.run(cfg, task=TOY, backend_factory=third)
    assert third.built == [] and done.read_bytes() == before
    # Adding a method reuses the cached chains of its source.
    cfg.eval.methods = ["sa", "ma_mv", "ma"]
    fourth = Factory()
    res = eval_stage.run(cfg, task=TOY, backend_factory=fourth)
    assert fourth.calls() == [] and "ma" in res["methods"]


def test_changed_settings_are_refused(tmp_path):
    cfg = make_run(tmp_path, methods=["sa"], seeds="[0]")
    eval_stage.run(cfg, task=TOY, backend_factory=Factory())
    cfg.eval.temperature = 0.9
    with pytest.raises(MaltError, match="temperature"):
        eval_stage.run(cfg, task=TOY, backend_factory=Factory())


def test_malformed_test_row_names_file_and_line(tmp_path):
    cfg = make_run(tmp_path, methods=["sa"])
    with open(cfg.task.test, "a") as f:
        f.write('{"question": "", "answer": "1"}\n')
    with pytest.raises(MaltError, match=r"test\.jsonl:13: field 'question' is empty"):
        eval_stage.run(cfg, task=TOY, backend_factory=Factory())


def test_missing_training_outputs_are_clear_errors(tmp_path):
    cfg = make_run(tmp_path, methods=["sa", "star_ma"], seeds="[0]")
    models = Path(cfg.run_dir) / "train" / "models.json"
    spec = json.loads(models.read_text())
    spec["refiner"]["sft"]["adapter"] = str(tmp_path / "nowhere")
    models.write_text(json.dumps(spec))
    with pytest.raises(MaltError, match="nowhere is not a readable PEFT adapter"):
        eval_stage.run(cfg, task=TOY, backend_factory=Factory())
    models.unlink()
    with pytest.raises(MaltError, match="models.json: not found; run `malt train`"):
        eval_stage.run(cfg, task=TOY, backend_factory=Factory())


@pytest.mark.parametrize("content", ["{broken", '{"generator": []}', "[]"])
def test_a_bad_models_json_is_reported_before_any_method_runs(tmp_path, content):
    cfg = make_run(tmp_path, methods=["sa", "ma_mv", "malt"], seeds="[0]")
    (Path(cfg.run_dir) / "train" / "models.json").write_text(content)
    factory = Factory()
    with pytest.raises(MaltError, match="models.json"):
        eval_stage.run(cfg, task=TOY, backend_factory=factory)
    assert factory.built == []  # the base methods did not run first
    assert not (Path(cfg.run_dir) / "eval" / "records").exists()


def test_a_retrained_adapter_is_never_served_stale_results(tmp_path):
    cfg = make_run(tmp_path, methods=["sa", "malt"], seeds="[0]")
    eval_stage.run(cfg, task=TOY, backend_factory=Factory())
    results = Path(cfg.run_dir) / "eval" / "results.json"
    before = results.read_bytes()
    # `malt train` retrained the verifier: same folder, other bytes.
    adapter_dir = Path(cfg.run_dir) / "train" / "verifier" / "final"
    (adapter_dir / "adapter_model.safetensors").write_bytes(b"retrained weights")
    factory = Factory()
    with pytest.raises(MaltError, match=r"settings.json: .*verifier.*final.*changed.*--restart"):
        eval_stage.run(cfg, task=TOY, backend_factory=factory)
    assert factory.built == [] and results.read_bytes() == before
    again = Factory()
    eval_stage.run(cfg, task=TOY, backend_factory=again, restart=True)
    assert [sorted(b.specs) for b in again.built] == [["generator"], sorted(ROLES)]
    same = Factory()  # and the new fingerprints are what a rerun now resumes from
    eval_stage.run(cfg, task=TOY, backend_factory=same)
    assert same.built == []


def test_results_from_before_model_fingerprints_are_not_trusted(tmp_path):
    cfg = make_run(tmp_path, methods=["sa"], seeds="[0]")
    eval_stage.run(cfg, task=TOY, backend_factory=Factory())
    settings = Path(cfg.run_dir) / "eval" / "settings.json"
    old = json.loads(settings.read_text())
    del old["fingerprints"]  # what an earlier malt wrote: models by path only
    settings.write_text(json.dumps({**old, "models": {"base": {"generator": {"model": "m"}}}}))
    with pytest.raises(MaltError, match="no record of the inputs these results were made with"):
        eval_stage.run(cfg, task=TOY, backend_factory=Factory())


def test_a_copied_run_dir_evaluates_its_own_adapters(tmp_path):
    import shutil

    cfg = make_run(tmp_path, methods=["malt"], seeds="[0]")
    models = Path(cfg.run_dir) / "train" / "models.json"
    spec = json.loads(models.read_text())
    for role in spec:  # what `malt train` writes: paths relative to the run dir
        for stage in spec[role]:
            spec[role][stage]["adapter"] = f"train/{role}/{stage}"
    models.write_text(json.dumps(spec))
    eval_stage.run(cfg, task=TOY, backend_factory=Factory())
    copy = tmp_path / "copy"
    shutil.copytree(cfg.run_dir, copy)
    cfg.run_dir = str(copy)
    factory = Factory()
    eval_stage.run(cfg, task=TOY, backend_factory=factory)
    assert factory.built == []  # same adapters (by content), so the copy's results stand
    (copy / "train" / "refiner" / "final" / "adapter_config.json").write_text('{"r": 4}')
    with pytest.raises(MaltError, match="refiner"):
        eval_stage.run(cfg, task=TOY, backend_factory=Factory())
    eval_stage.run(cfg, task=TOY, backend_factory=factory, restart=True)
    used = {r: Path(s.adapter) for r, s in factory.built[0].specs.items()}
    assert used == {r: (copy / "train" / r / "final").resolve() for r in ROLES}


def generate_record(cfg, train_source, trees=()):
    gen = Path(cfg.run_dir) / "generate"
    gen.mkdir(parents=True, exist_ok=True)
    (gen / "config.yaml").write_text(yaml.safe_dump({"task": {"train": str(train_source)},
                                                     "generate": {"split": "train"}}))
    write_trees(gen / "trees-00000.jsonl", trees)


def tree_for(row):
    p = TOY.parse_row(row, "x")
    g = Node(id=f"{p.id}/g0", role="generator", parent_id=None, prompt=[], completion="")
    v = Node(id=f"{g.id}/v0", role="verifier", parent_id=g.id, prompt=[], completion="")
    r = Node(id=f"{v.id}/r0", role="refiner", parent_id=v.id, prompt=[], completion="")
    return Tree(problem=p, branching=Branching(1, 1, 1), nodes=[g, v, r])


def test_refuses_the_split_the_trees_came_from(tmp_path):
    cfg = make_run(tmp_path, methods=["sa"])
    generate_record(cfg, cfg.task.test)
    with pytest.raises(MaltError, match="split the training trees were generated from"):
        eval_stage.run(cfg, task=TOY, backend_factory=Factory())
    # A copy under another name is caught by its hash, recorded in the manifest only.
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(Path(cfg.task.test).read_bytes())
    generate_record(cfg, tmp_path / "elsewhere.jsonl")
    (Path(cfg.run_dir) / "generate" / "manifest.json").write_text(
        json.dumps({"dataset": {"sha256": sha256_file(copy)}}))
    cfg.task.test = str(copy)
    with pytest.raises(MaltError, match="copy.jsonl is the split"):
        eval_stage.run(cfg, task=TOY, backend_factory=Factory())


def test_reports_question_overlap_with_training_trees(tmp_path, capsys):
    cfg = make_run(tmp_path, methods=["sa"], seeds="[0]")
    train = tmp_path / "train.jsonl"
    rows = toy_rows(3, start=10) + [dict(toy_rows(1, start=4)[0], question="what is 4+9? ")]
    write_jsonl(train, rows)
    generate_record(cfg, train, [tree_for(r) for r in rows])
    res = eval_stage.run(cfg, task=TOY, backend_factory=Factory())
    ov = res["leakage"]["overlap"]
    assert (ov["overlap"], ov["eval_questions"], ov["training_questions"]) == (3, 12, 4)
    assert "3 of 12 test questions also appear" in capsys.readouterr().err


@pytest.mark.parametrize("override, field", [
    ("eval.methods=[sa,best]", "eval.methods: unknown method 'best'"),
    ("eval.seeds=[1,1]", "eval.seeds: must not repeat"),
    ("eval.subset_size=0", "eval.subset_size"),
    ("eval.confidence=1.5", "eval.confidence"),
    ("eval.chunk_size=0", "eval.chunk_size"),
])
def test_bad_eval_config_names_the_field(override, field):
    with pytest.raises(MaltError, match=field):
        load_config(None, [override], checks=CHECKS)


def test_moved_test_file_with_the_same_bytes_resumes(tmp_path):
    cfg = make_run(tmp_path, methods=["sa"], seeds="[0]")
    eval_stage.run(cfg, task=TOY, backend_factory=Factory())
    moved = tmp_path / "moved.jsonl"
    moved.write_bytes(Path(cfg.task.test).read_bytes())
    cfg.task.test = str(moved)
    factory = Factory()
    eval_stage.run(cfg, task=TOY, backend_factory=factory)
    assert factory.built == []
    moved.write_text(moved.read_text().replace("What is 0+1?", "What is 0+2?"))
    with pytest.raises(MaltError, match="test_sha256"):
        eval_stage.run(cfg, task=TOY, backend_factory=Factory())


def test_training_sources_are_listed_once(tmp_path):
    cfg = make_run(tmp_path, methods=["sa"], seeds="[0]")
    train = tmp_path / "train.jsonl"
    write_jsonl(train, toy_rows(3, start=50))
    generate_record(cfg, train)
    (Path(cfg.run_dir) / "generate" / "manifest.json").write_text(
        json.dumps({"dataset": {"path": str(train), "sha256": sha256_file(train)}}))
    res = eval_stage.run(cfg, task=TOY, backend_factory=Factory())
    assert res["leakage"]["training_sources"] == [str(train)]
    assert res["leakage"]["overlap"]["overlap"] == 0
