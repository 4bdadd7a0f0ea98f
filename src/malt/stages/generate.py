"""`malt generate`: sample G -> V -> R trees for the training questions into sharded JSONL.

Layout of `<run_dir>/generate/`: `trees-00000.jsonl`, ... (one shard per chunk of
`generate.chunk_size` questions, each written atomically), `config.yaml` (the resolved
config), `manifest.json` (versions, models, dataset hash, seeds, summary).

Resume: rerunning on the same folder skips every shard already on disk and regenerates the
chunk that was in flight. A run whose inputs differ from those the manifest recorded
(generation settings, each role's model by content) is refused unless `restart=True`
(`--restart`), which deletes the old shards first. Shards past the plan's last chunk (a
smaller `task.limit_train`) are deleted, so `malt label` never reads them.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from malt.artifacts import BASE, resolve
from malt.backends.base import Backend, ModelSpec
from malt.chain import RoleChain
from malt.config import RunConfig, save_config, to_dict
from malt.errors import MaltError
from malt.fingerprint import check_unchanged, config_inputs, model_fingerprint, spec_inputs
from malt.io import (
    ensure_writable,
    manifest,
    read_trees,
    reading,
    sha256_file,
    write_json,
    write_trees,
)
from malt.records import Problem, Tree
from malt.runspec import chain_of, sampling_of
from malt.sampling import SampleStats, sample_trees
from malt.tasks import get_task
from malt.tasks.base import Task
from malt.workers import Job, WorkerReport, run_jobs

STAGE = "generate"
# Settings that change what is sampled; any difference from the saved config is refused.
# task.limit_train is not among them: a larger limit extends a finished run.
FINGERPRINT_KEYS = (
    "seed",
    "chain",
    "task.name",
    "task.train",
    "task.skip_train",
    "task.test",
    "task.train_split",
    "task.test_split",
    "task.hub_config",
    "models",
    "generate",
    "backend.name",
    "backend.dtype",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI flags of `malt generate` (besides --config and overrides)."""
    parser.add_argument(
        "--restart",
        action="store_true",
        help="delete this run's trees and start over (needed when the config changed)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def main(cfg: RunConfig, args: argparse.Namespace) -> dict[str, Any]:
    """CLI entry point: run the stage and return its summary."""
    return run(cfg, restart=args.restart, progress=not args.no_progress)


def run(
    cfg: RunConfig,
    restart: bool = False,
    backend: Backend | None = None,
    progress: bool = True,
    models: Mapping[str, ModelSpec] | None = None,
) -> dict[str, Any]:
    """Generate (or finish generating) the trees of `cfg`; returns the summary dict.

    `models` (role -> ModelSpec) samples with other models than the config's base models,
    e.g. an earlier round's trained agents (`malt iterate`); they are fingerprinted by
    content like the base models, so a retrained adapter is never served stale trees.
    """
    start = time.perf_counter()
    out = ensure_writable(cfg.stage_dir(STAGE))
    task = get_task(cfg.task.name)
    source, problems = load_problems(task, cfg)
    consumed = consumed_inputs(cfg, models)
    prepare_dir(out, cfg, restart, consumed)
    # Per-shard totals (trees, leaves, reward, tokens) live in the manifest, updated after each
    # shard, so a resumed run's summary need not re-grade every finished tree.
    shard_stats = load_shard_stats(out / "manifest.json")
    chunks = chunked(problems, cfg.generate.chunk_size)
    removed = remove_unplanned_shards(out, len(chunks), shard_stats)
    pending = [i for i, chunk in enumerate(chunks) if not shard_done(shard_path(out, i), chunk)]

    def save(status: str, summary: dict | None = None) -> None:
        info = run_manifest(cfg, source, len(problems), status, summary)
        # Sorted: with several workers, shards finish in any order.
        write_json(out / "manifest.json", {**info, "consumed": consumed,
                                           "shards": dict(sorted(shard_stats.items()))})

    def on_shard(index: int, trees: list[Tree], sampled: SampleStats) -> None:
        shard_stats[shard_path(out, index).name] = {**tree_stats(task, trees),
                                                    "ledger": sampled.ledger()}
        save("running")

    save("running")
    stats, workers = _generate_chunks(cfg, task, chunks, pending, out, progress, on_shard,
                                      backend, models)
    names = [shard_path(out, i).name for i in range(len(chunks))]
    for name in names:
        if name not in shard_stats:  # finished before this manifest kept per-shard totals
            shard_stats[name] = tree_stats(task, list(read_trees(out / name)))
    summary = summarize(out, [shard_stats[n] for n in names], stats, time.perf_counter() - start)
    summary["removed_shards"] = removed
    summary["workers"] = workers.summary()
    save("complete", summary)
    return summary


def _generate_chunks(
    cfg: RunConfig,
    task: Task,
    chunks: list[list[Problem]],
    pending: list[int],
    out: Path,
    progress: bool,
    on_shard: Callable[[int, list[Tree], SampleStats], None],
    backend: Backend | None,
    models: Mapping[str, ModelSpec] | None,
) -> tuple[SampleStats, WorkerReport]:
    """Sample and write each pending chunk (here, or on `backend.workers` Ray workers), with a
    progress bar of questions and tokens/s."""
    from tqdm.auto import tqdm

    chain = chain_of(cfg)
    sampling = sampling_of(cfg, chain)
    total = sum(len(c) for c in chunks)
    done = total - sum(len(chunks[i]) for i in pending)
    stats = SampleStats()
    t0 = time.perf_counter()
    here = backend is not None or cfg.backend.workers == 1
    with tqdm(
        total=total, initial=done, unit="q", desc="generate", disable=not progress or None
    ) as bar:

        def on_level(role: str, generations: int, tokens: int) -> None:
            stats.count(role, generations, tokens)
            show_rate(chain.role(role).letter.upper() + " level")

        def show_rate(where: str) -> None:
            rate = stats.total_tokens / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix_str(f"{where}, {rate:,.0f} tok/s")

        def on_result(i: int, result: tuple[list[Tree], SampleStats]) -> None:
            trees, sampled = result
            write_trees(shard_path(out, i), trees)
            on_shard(i, trees, sampled)
            if not here:  # levels were counted in the worker
                for role, n in sampled.generations.items():
                    stats.count(role, n, sampled.tokens[role])
                show_rate(f"{cfg.backend.workers} workers")
            bar.update(len(chunks[i]))

        # A level callback only makes sense in this process (it drives the bar).
        jobs = [Job(i, sample_chunk, (task, chunks[i], sampling, cfg.seed, chain,
                                      on_level if here else None)) for i in pending]
        report = run_jobs(cfg.backend, functools.partial(build_run_backend, cfg, models),
                          jobs, on_result, backend)
    return stats, report


def sample_chunk(backend: Backend, task: Task, problems: list[Problem],
                 sampling: Mapping[str, Any], seed: int, chain: RoleChain,
                 on_level: Callable[[str, int, int], None] | None) -> tuple[list[Tree], SampleStats]:
    """One chunk's trees (a `Job` function: it runs wherever the backend is)."""
    return sample_trees(task, problems, backend, sampling, seed, on_level, chain=chain)


def build_run_backend(cfg: RunConfig, models: Mapping[str, ModelSpec] | None = None) -> Backend:
    """The configured backend with each role's model: `models`, else its base model."""
    from malt.backends import build_backend

    models = models or {r.name: resolve(cfg, r.model, BASE) for r in chain_of(cfg)}
    return build_backend(
        cfg.backend,
        models,
        trust_remote_code=cfg.models.trust_remote_code,
        revision=cfg.models.revision,
    )


def load_problems(task: Task, cfg: RunConfig) -> tuple[str, list[Problem]]:
    """(source, problems) of the split `generate.split` (train by default)."""
    split = cfg.generate.split
    if split not in ("train", "test"):
        raise MaltError(f"generate.split: {split!r} is not one of train, test")
    source = cfg.task.train if split == "train" else cfg.task.test
    source = source or task.default_hub_id
    if not source:
        raise MaltError(f"task.{split}: no data given for task {task.name!r}")
    hub_split = cfg.task.train_split if split == "train" else cfg.task.test_split
    skip = cfg.task.skip_train if split == "train" else 0
    limit = cfg.task.limit_train + skip if split == "train" and cfg.task.limit_train else None
    with reading(source):
        problems = task.load(source, split=hub_split, hub_config=cfg.task.hub_config,
                             limit=limit)[skip:]
    if not problems:
        raise MaltError(f"{source}: no questions to generate for")
    return source, problems


def chunked(problems: Sequence[Problem], size: int) -> list[list[Problem]]:
    """Consecutive chunks of `size` problems (the last may be shorter)."""
    return [list(problems[i : i + size]) for i in range(0, len(problems), size)]


def shard_path(out: Path, index: int) -> Path:
    return out / f"trees-{index:05d}.jsonl"


def consumed_inputs(cfg: RunConfig, specs: Mapping[str, ModelSpec] | None = None
                    ) -> dict[str, Any]:
    """What the trees depend on: the sampling settings and each role's model, by content."""
    if specs is None:
        models = {f"the {slot} model": model_fingerprint(cfg.models.for_role(slot))
                  for slot in chain_of(cfg).models}
    else:
        models = spec_inputs(specs)
    return {**config_inputs(to_dict(cfg), FINGERPRINT_KEYS), **models}


def prepare_dir(out: Path, cfg: RunConfig, restart: bool, consumed: dict[str, Any]) -> None:
    """Check (or reset) the run folder against what it was started with, then save this config.

    The manifest's record of consumed inputs is checked; a folder from before that record
    existed is checked against its saved config.
    """
    saved_path = out / "config.yaml"
    if saved_path.is_file() and not restart:
        recorded, now = _recorded_inputs(out / "manifest.json"), consumed
        if recorded is None:  # compare what that folder's saved config can tell
            recorded, now = _saved_settings(saved_path), config_inputs(to_dict(cfg), FINGERPRINT_KEYS)
        check_unchanged(recorded, now, saved_path, "this run was started",
                        "delete its trees and start over")
    if restart:
        for old in [*out.glob("trees-*.jsonl"), out / "manifest.json", saved_path]:
            old.unlink(missing_ok=True)
    for tmp in out.glob(".trees-*.tmp"):  # a write cut short by a crash
        tmp.unlink()
    save_config(cfg, saved_path)


def _recorded_inputs(path: Path) -> dict[str, Any] | None:
    """The inputs a generate manifest recorded (None: no manifest, or one from before)."""
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("consumed")
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        return None
    return recorded if isinstance(recorded, dict) else None


def _saved_settings(saved_path: Path) -> dict[str, Any]:
    """The sampling settings of a saved config.yaml (a folder from before manifests kept them)."""
    try:
        saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise MaltError(f"{saved_path}: not valid YAML ({e}); pass --restart to start over") from None
    return config_inputs(saved if isinstance(saved, dict) else {}, FINGERPRINT_KEYS)


def remove_unplanned_shards(out: Path, planned: int, shard_stats: dict[str, Any]) -> int:
    """Delete the shards past this run's last chunk (a smaller task.limit_train); their count.

    `malt label` reads every shard in the folder, so none may outlive the plan.
    """
    keep = {shard_path(out, i).name for i in range(planned)}
    removed = [p for p in sorted(out.glob("trees-*.jsonl")) if p.name not in keep]
    for path in removed:
        path.unlink()
        shard_stats.pop(path.name, None)
    for name in [n for n in shard_stats if n not in keep]:
        shard_stats.pop(name)
    return len(removed)


def shard_done(path: Path, chunk: Sequence[Problem]) -> bool:
    """Whether `path` already holds the trees of exactly this chunk (shards are atomic).

    A shard holding only the first questions of its chunk, or those and more (the last chunk
    of a run whose `task.limit_train` has since grown or shrunk), is regenerated."""
    if not path.is_file():
        return False
    ids = [t.problem.id for t in read_trees(path)]
    want = [p.id for p in chunk]
    common = min(len(ids), len(want))
    if len(ids) != len(want) and ids[:common] == want[:common]:
        return False
    if ids != want:
        raise MaltError(
            f"{path}: holds other questions than this chunk of the dataset now gives (did the "
            f"data file change?); pass --restart to start over"
        )
    return True


def tree_stats(task: Task, trees: Sequence[Tree]) -> dict[str, int]:
    """Totals of one shard: trees, leaves, correct leaves (graded here), generated tokens."""
    leaves = [(leaf, t.problem) for t in trees for leaf in t.nodes[-t.branching.leaves:]]
    return {
        "trees": len(trees),
        "leaves": len(leaves),
        "correct_leaves": sum(task.reward(leaf.completion, p) for leaf, p in leaves),
        "tokens": sum(n.num_tokens or 0 for t in trees for n in t.nodes),
    }


def load_shard_stats(path: Path) -> dict[str, dict[str, int]]:
    """Per-shard totals saved in a previous manifest ({} when there is none)."""
    if not path.is_file():
        return {}
    try:
        shards = json.loads(path.read_text(encoding="utf-8")).get("shards")
    except (json.JSONDecodeError, AttributeError):
        return {}
    return dict(shards) if isinstance(shards, dict) else {}


def summarize(
    out: Path, shards: list[dict[str, int]], stats: SampleStats, wall_s: float
) -> dict[str, Any]:
    """Totals over every shard of the run, plus what this invocation generated and its time."""
    total = {k: sum(s[k] for s in shards) for k in ("trees", "leaves", "correct_leaves", "tokens")}
    leaves = total["leaves"]
    ledger: dict[str, dict[str, int]] = {}
    for shard in shards:
        for role, counts in shard.get("ledger", {}).items():
            into = ledger.setdefault(role, dict.fromkeys(counts, 0))
            for key, n in counts.items():
                into[key] += n
    return {
        "run_dir": str(out),
        "shards": len(shards),
        "trees": total["trees"],
        "leaves": leaves,
        "mean_leaf_reward": round(total["correct_leaves"] / leaves, 4) if leaves else None,
        "tokens": total["tokens"],
        # Prompt and completion tokens per role, as the backend reported them; shards
        # finished before the ledger existed are not in it (`shards_without_ledger`).
        "ledger": ledger,
        "shards_without_ledger": sum(1 for s in shards if "ledger" not in s),
        "generated_now": {
            "generations": sum(stats.generations.values()),
            "tokens": stats.total_tokens,
        },
        "wall_s": round(wall_s, 3),
        "tokens_per_s_now": round(stats.total_tokens / wall_s, 1) if wall_s > 0 else None,
    }


def run_manifest(
    cfg: RunConfig, source: str, questions: int, status: str, summary: dict | None = None
) -> dict[str, Any]:
    """Provenance: versions, git commit, models (with cheap hashes), dataset hash, seeds."""
    return manifest(
        {
            "stage": STAGE,
            "status": status,
            "seed": cfg.seed,
            "seed_scheme": (
                "prompt seed = derive_seed(seed, parent_id, role); "
                "sample j = derive_seed(prompt seed, j)"
            ),
            "backend": cfg.backend.name,
            "models": {slot: describe_model(cfg.models.for_role(slot))
                       for slot in chain_of(cfg).models},
            "dataset": describe_file(source),
            "questions": questions,
            "chunk_size": cfg.generate.chunk_size,
            "summary": summary,
        }
    )


def describe_model(model: str) -> dict[str, Any]:
    """A model id, or a local folder with its config hash and weight-file header hashes."""
    path = Path(model)
    if not path.is_dir():
        return {"id": model}
    info: dict[str, Any] = {"path": str(path)}
    if (path / "config.json").is_file():
        info["config_sha256"] = sha256_file(path / "config.json")
    # Hashing whole checkpoints costs minutes; the first MiB (the safetensors header with
    # every tensor's name, shape and offset) plus the size is cheap and catches most swaps.
    info["weights"] = {
        f.name: {"bytes": f.stat().st_size, "sha256_first_mib": sha256_file(f, 1 << 20)}
        for f in sorted(path.glob("*.safetensors"))
    }
    return info


def describe_file(source: str) -> dict[str, Any]:
    path = Path(source)
    if path.is_file():
        return {"path": str(path), "sha256": sha256_file(path)}
    return {"id": source}
