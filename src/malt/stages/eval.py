"""`malt eval`: the paper's settings on the test split, per-question records, results JSON.

For each group of methods that share chains (`malt.evaluate.methods.groups`: with the default
Table 1, the base models, the STaR SFT adapters and the MALT final adapters) one backend is
built and, per seed, k chains are sampled for every question in chunks of `eval.chunk_size`;
each method's records are then read off those chains. Reruns
resume: finished chunks and finished (method, seed) record files are kept and skipped, as
long as the settings and every model (by content: a retrained adapter is another model) are
those the earlier results were made with; otherwise the run stops in one sentence naming
what changed, and `--restart` evaluates from scratch.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from malt.artifacts import models_path, read_models, resolve
from malt.backends import Backend, ModelSpec, SamplingParams, build_backend
from malt.chain import RoleChain
from malt.config import RunConfig, save_config
from malt.errors import MaltError
from malt.evaluate import leakage, store
from malt.evaluate.chains import Chain, run_chains
from malt.evaluate.methods import Group, Method, get_methods, groups
from malt.evaluate.scoring import build_results, method_record, select_subset
from malt.fingerprint import spec_inputs
from malt.io import (
    ensure_writable,
    manifest,
    read_json,
    read_trees,
    reading,
    sha256_file,
    write_json,
)
from malt.records import Problem
from malt.runspec import chain_of
from malt.tasks import get_task
from malt.tasks.base import Task
from malt.workers import Job, run_jobs

BackendFactory = Callable[[Mapping[str, ModelSpec]], Backend]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`malt eval` flags; settings come from the config and overrides (eval.methods=[sa,malt])."""
    parser.add_argument("--restart", action="store_true",
                        help="delete this run's eval results and evaluate from scratch "
                             "(needed when a model or a setting changed)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def main(cfg: RunConfig, args: argparse.Namespace) -> dict[str, Any]:
    """CLI entry: run the evaluation and return a short summary."""
    results = run(cfg, progress=not args.no_progress, restart=args.restart)
    return {
        "results": str(cfg.stage_dir("eval") / "results.json"),
        "accuracy": {n: f"{m['mean']:.3f} ± {m['std']:.3f}" for n, m in results["methods"].items()},
        "overlap_with_training_trees": (results["leakage"].get("overlap") or {}).get("overlap"),
    }


def run(
    cfg: RunConfig,
    task: Task | None = None,
    backend_factory: BackendFactory | None = None,
    progress: bool = False,
    restart: bool = False,
) -> dict[str, Any]:
    """Evaluate `cfg.eval.methods` over `cfg.eval.seeds`; returns (and writes) results.json.

    `task` and `backend_factory` replace `get_task(cfg.task.name)` and `build_backend`, for
    tests and for callers that hold a backend already. Every model is checked and
    fingerprinted before any method runs; earlier results made with other settings or other
    models (by content) are refused unless `restart`, which deletes them first.
    """
    task = task or get_task(cfg.task.name)
    # Methods that share chains grade the same answers again; checkers such as math-verify
    # are slow, so remember each (pred, gold) verdict for the run. (Sampling, which may run
    # in worker processes, gets the plain task.)
    grader = dataclasses.replace(task, equivalent_fn=functools.lru_cache(maxsize=1 << 16)(
        task.equivalent_fn))
    factory = backend_factory or (lambda models: build_backend(
        cfg.backend, models, trust_remote_code=cfg.models.trust_remote_code,
        revision=cfg.models.revision))
    chain = chain_of(cfg)
    methods = get_methods(cfg, cfg.eval.methods)
    eval_dir = ensure_writable(cfg.stage_dir("eval"))
    test, problems, leak = load_eval_set(cfg, task)
    subsets = {s: select_subset(problems, cfg.eval.subset_size, s) for s in cfg.eval.seeds}
    plan = groups(methods, chain)
    # Every group's models are read and checked here, so a broken models.json stops the
    # run before the base methods spend their time.
    specs = group_specs(cfg, plan)
    if restart:
        store.clear(eval_dir)
    settings = {**base_settings(cfg, test), "fingerprints": model_fingerprints(specs)}
    store.check_settings(eval_dir / "settings.json", settings)
    for group in plan:
        pending = [(m, s) for m in group.methods for s in cfg.eval.seeds
                   if not store.records_complete(store.records_path(eval_dir, m.name, s),
                                                 subsets[s])]
        if pending:
            evaluate_group(cfg, task, chain, factory, group, specs[group.key], pending,
                           subsets, progress, grader)
    records = {(m.name, s): store.read_records(store.records_path(eval_dir, m.name, s))
               for m in methods for s in cfg.eval.seeds}
    results = build_results(methods, chain, records, cfg.eval.seeds,
                            cfg.eval.bootstrap_samples, cfg.eval.confidence, cfg.seed)
    results = {**header(cfg, task, test, problems, subsets), **results, "leakage": leak}
    write_json(eval_dir / "results.json", results)
    save_config(cfg, eval_dir / "config.yaml")
    write_json(eval_dir / "manifest.json", manifest({
        "stage": "eval", "settings": json.loads((eval_dir / "settings.json").read_text()),
        "backend": cfg.backend.name, "methods": [m.name for m in methods],
        "ledger": store.ledger(eval_dir)}))
    return results


def load_eval_set(
    cfg: RunConfig, task: Task
) -> tuple[leakage.Source, list[Problem], dict[str, Any]]:
    """The test source, its problems, and the leakage findings; refuses the trees' split."""
    test = eval_source(cfg, task)
    leak = check_leakage(cfg, test)
    with reading(test.name):
        problems = task.load(test.name, cfg.task.test_split, cfg.task.hub_config)
    if not problems:
        raise MaltError(f"task.test: {test.name} holds no questions")
    leak["overlap"] = overlap(cfg, problems)
    return test, problems, leak


def eval_source(cfg: RunConfig, task: Task) -> leakage.Source:
    """The evaluation set: `task.test` (or the task's Hub default) at `task.test_split`."""
    name = cfg.task.test or task.default_hub_id
    if not name:
        raise MaltError("task.test: no test set given (a .jsonl/.parquet path or a Hub id)")
    path = Path(name)
    sha = sha256_file(path) if path.is_file() else None
    return leakage.Source(name, cfg.task.test_split, sha)


def check_leakage(cfg: RunConfig, test: leakage.Source) -> dict[str, Any]:
    """Refuse the split the trees came from; say which records were compared."""
    gen_dir = cfg.stage_dir("generate")
    gen_cfg = _read_yaml(gen_dir / "config.yaml")
    manifest_path = gen_dir / "manifest.json"
    gen_manifest = read_json(manifest_path) if manifest_path.is_file() else None
    training = _unique([_hashed(s) for s in leakage.generated_sources(gen_cfg, gen_manifest)])
    leakage.check_not_training_split(test, training, str(gen_dir))
    if cfg.task.train:
        own = _hashed(leakage.Source(cfg.task.train, cfg.task.train_split))
        leakage.check_not_training_split(test, [own], "task.train")
    return {"generate_record_found": gen_cfg is not None or gen_manifest is not None,
            "training_sources": [s.name for s in training]}


def _unique(sources: list[leakage.Source]) -> list[leakage.Source]:
    """Drop sources that repeat an earlier one's content (config path and manifest hash)."""
    out: list[leakage.Source] = []
    for src in sources:
        if not any(leakage.same_source(src, o) for o in out):
            out.append(src)
    return out


def _hashed(src: leakage.Source) -> leakage.Source:
    if src.sha256 is None and src.path is not None:
        return leakage.Source(src.name, src.split, sha256_file(src.path))
    return src


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise MaltError(f"{path}: not readable ({e})") from None


def overlap(cfg: RunConfig, problems: Sequence[Problem]) -> dict[str, Any] | None:
    """Question overlap between the training trees (when generated) and the test set."""
    gen_dir = cfg.stage_dir("generate")
    if not any(gen_dir.glob("trees-*.jsonl")):
        return None
    found = leakage.question_overlap((t.problem.question for t in read_trees(gen_dir)), problems)
    if found["overlap"]:
        print(f"malt eval: warning: {found['overlap']} of {len(problems)} test questions also "
              f"appear in the training trees (e.g. {found['examples'][0]})", file=sys.stderr)
    return found


def group_specs(cfg: RunConfig, plan: Sequence[Group]) -> dict[str, dict[str, ModelSpec]]:
    """For each group, the checked ModelSpec of each role it runs (models.json read once)."""
    needs_trained = any(src != "base" for g in plan for src in g.sources)
    trained = read_models(models_path(cfg.run_dir)) if needs_trained else {}
    return {g.key: {role: resolve(cfg, slot, source, trained)
                    for role, (slot, source) in g.specs_needed().items()} for g in plan}


def model_fingerprints(specs: Mapping[str, Mapping[str, ModelSpec]]) -> dict[str, Any]:
    """Each group's model and adapter of each role, by content ("the verifier's final
    adapter"; the group is named when it mixes sources)."""
    return {k: v for key, by_role in specs.items()
            for k, v in spec_inputs(by_role, f"{key} ").items()}


def base_settings(cfg: RunConfig, test: leakage.Source) -> dict[str, Any]:
    """Everything that must match for earlier eval files to be reused."""
    e = cfg.eval
    return {"task": cfg.task.name, "test": test.name, "test_split": test.split,
            "test_sha256": test.sha256, "subset_size": e.subset_size, "chains": e.chains,
            "temperature": e.temperature, "top_p": e.top_p, "max_new_tokens": e.max_new_tokens}


def header(cfg: RunConfig, task: Task, test: leakage.Source, problems: Sequence[Problem],
           subsets: Mapping[int, Sequence[Problem]]) -> dict[str, Any]:
    return {"task": task.name, "test": test.name, "test_split": test.split,
            "test_sha256": test.sha256, "test_questions": len(problems),
            "questions_per_seed": {str(s): len(p) for s, p in subsets.items()},
            "seeds": list(cfg.eval.seeds), "chains": cfg.eval.chains,
            "subset_size": cfg.eval.subset_size, "confidence": cfg.eval.confidence}


def evaluate_group(
    cfg: RunConfig,
    task: Task,
    chain: RoleChain,
    factory: BackendFactory,
    group: Group,
    specs: Mapping[str, ModelSpec],
    pending: Sequence[tuple[Method, int]],
    subsets: Mapping[int, Sequence[Problem]],
    progress: bool = False,
    grader: Task | None = None,
) -> None:
    """Sample the chains one group needs (here, or on `backend.workers` Ray workers) and write
    its pending record files; `grader` (default `task`) grades the records.

    Every chunk not already on disk is one job; each finished chunk is saved at once, so an
    interrupted group resumes from its chunks, with any number of workers.
    """
    k = max(m.k(cfg.eval.chains, chain) for m, _ in pending)
    longest = max(len(m.chain(chain)) for m, _ in pending)
    roles = group.chain.prefix(longest)
    eval_dir = cfg.stage_dir("eval")
    e = cfg.eval
    params = SamplingParams(temperature=e.temperature, top_p=e.top_p,
                            max_new_tokens=e.max_new_tokens)
    seeds = sorted({s for _, s in pending})
    parts = {s: [subsets[s][i:i + e.chunk_size] for i in range(0, len(subsets[s]), e.chunk_size)]
             for s in seeds}
    chains = {s: [store.load_chunk(store.chunk_path(eval_dir, group.key, s, i), part, k,
                                   roles.names) for i, part in enumerate(parts[s])]
              for s in seeds}
    jobs = [Job((s, i), run_chains, (task, part, roles, k, params, s))
            for s in seeds for i, part in enumerate(parts[s]) if chains[s][i] is None]
    total = sum(len(subsets[s]) for s in seeds)
    todo = sum(len(job.args[1]) for job in jobs)
    with tqdm(total=total, initial=total - todo, unit="q", disable=not progress,
              desc=f"eval {group.key} models, seeds {', '.join(map(str, seeds))}") as bar:

        def on_result(key: tuple[int, int], result: list[list[Chain]]) -> None:
            s, i = key
            store.save_chunk(store.chunk_path(eval_dir, group.key, s, i), parts[s][i], result)
            chains[s][i] = result
            bar.update(len(parts[s][i]))

        models = {r.name: specs[r.name] for r in roles}
        run_jobs(cfg.backend, functools.partial(factory, models), jobs, on_result)
    for m, s in pending:
        rows = [method_record(m, chain, p, cs, m.k(cfg.eval.chains, chain), grader or task)
                for p, cs in zip(subsets[s], (c for part in chains[s] for c in part), strict=True)]
        store.write_records(store.records_path(eval_dir, m.name, s), rows)
