"""`malt generate`: sample G -> V -> R trees for the training questions into sharded JSONL.

Layout of `<run_dir>/generate/`: `trees-00000.jsonl`, ... (one shard per chunk of
`generate.chunk_size` questions, each written atomically), `config.yaml` (the resolved
config), `manifest.json` (versions, models, dataset hash, seeds, summary).

Resume: rerunning on the same folder skips every shard already on disk and regenerates the
chunk that was in flight. A config whose generation settings differ from the saved one is
refused unless `restart=True` (`--restart`), which deletes the old shards first.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from malt.backends.base import Backend, ModelSpec, SamplingParams
from malt.config import RunConfig, save_config, to_dict
from malt.errors import MaltError
from malt.io import manifest, read_trees, sha256_file, write_json, write_trees
from malt.records import REFINER, ROLES, Problem, Tree
from malt.sampling import SampleStats, sample_trees
from malt.tasks import get_task
from malt.tasks.base import Task

STAGE = "generate"
# Settings that change what is sampled; any difference from the saved config is refused.
# task.limit_train is not among them: a larger limit extends a finished run.
FINGERPRINT_KEYS = (
    "seed",
    "task.name",
    "task.train",
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
) -> dict[str, Any]:
    """Generate (or finish generating) the trees of `cfg`; returns the summary dict."""
    start = time.perf_counter()
    out = cfg.stage_dir(STAGE)
    task = get_task(cfg.task.name)
    source, problems = load_problems(task, cfg)
    prepare_dir(out, cfg, restart)
    # Per-shard totals (trees, leaves, reward, tokens) live in the manifest, updated after each
    # shard, so a resumed run's summary need not re-grade every finished tree.
    shard_stats = load_shard_stats(out / "manifest.json")
    chunks = chunked(problems, cfg.generate.chunk_size)
    pending = [i for i, chunk in enumerate(chunks) if not shard_done(shard_path(out, i), chunk)]

    def save(status: str, summary: dict | None = None) -> None:
        info = run_manifest(cfg, source, len(problems), status, summary)
        write_json(out / "manifest.json", {**info, "shards": shard_stats})

    def on_shard(index: int, trees: list[Tree]) -> None:
        shard_stats[shard_path(out, index).name] = tree_stats(task, trees)
        save("running")

    save("running")
    stats = SampleStats()
    if pending:
        own_backend = backend is None
        backend = backend or build_run_backend(cfg)
        try:
            stats = _generate_chunks(cfg, task, backend, chunks, pending, out, progress, on_shard)
        finally:
            if own_backend:
                backend.close()
    names = [shard_path(out, i).name for i in range(len(chunks))]
    for name in names:
        if name not in shard_stats:  # finished before this manifest kept per-shard totals
            shard_stats[name] = tree_stats(task, list(read_trees(out / name)))
    summary = summarize(out, [shard_stats[n] for n in names], stats, time.perf_counter() - start)
    save("complete", summary)
    return summary


def _generate_chunks(
    cfg: RunConfig,
    task: Task,
    backend: Backend,
    chunks: list[list[Problem]],
    pending: list[int],
    out: Path,
    progress: bool,
    on_shard: Callable[[int, list[Tree]], None],
) -> SampleStats:
    """Sample and write each pending chunk, with a progress bar of questions and tokens/s."""
    from tqdm.auto import tqdm

    sampling = sampling_params(cfg)
    total = sum(len(c) for c in chunks)
    done = total - sum(len(chunks[i]) for i in pending)
    stats = SampleStats()
    t0 = time.perf_counter()
    with tqdm(
        total=total, initial=done, unit="q", desc="generate", disable=not progress or None
    ) as bar:

        def on_level(role: str, generations: int, tokens: int) -> None:
            stats.generations[role] += generations
            stats.tokens[role] += tokens
            rate = stats.total_tokens / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix_str(f"{role[0].upper()} level, {rate:,.0f} tok/s")

        for i in pending:
            trees, _ = sample_trees(task, chunks[i], backend, sampling, cfg.seed, on_level)
            write_trees(shard_path(out, i), trees)
            on_shard(i, trees)
            bar.update(len(chunks[i]))
    return stats


def sampling_params(cfg: RunConfig) -> dict[str, SamplingParams]:
    """Per-role SamplingParams from `generate.<role>`."""
    out = {}
    for role in ROLES:
        s = cfg.generate.role(role)
        out[role] = SamplingParams(
            n=s.n, temperature=s.temperature, top_p=s.top_p, max_new_tokens=s.max_new_tokens
        )
    return out


def build_run_backend(cfg: RunConfig) -> Backend:
    """The configured backend with each role's model (no adapters before training)."""
    from malt.backends import build_backend

    models = {role: ModelSpec(cfg.models.for_role(role)) for role in ROLES}
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
    limit = cfg.task.limit_train if split == "train" else None
    problems = task.load(source, split=hub_split, hub_config=cfg.task.hub_config, limit=limit)
    if not problems:
        raise MaltError(f"{source}: no questions to generate for")
    return source, problems


def chunked(problems: Sequence[Problem], size: int) -> list[list[Problem]]:
    """Consecutive chunks of `size` problems (the last may be shorter)."""
    return [list(problems[i : i + size]) for i in range(0, len(problems), size)]


def shard_path(out: Path, index: int) -> Path:
    return out / f"trees-{index:05d}.jsonl"


def fingerprint(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a config dict that decide what gets sampled."""
    fp = {}
    for key in FINGERPRINT_KEYS:
        node: Any = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        fp[key] = node
    return fp


def first_difference(saved: Any, now: Any, prefix: str = "") -> str | None:
    """Dotted name of the first field where two config values differ (None: equal).

    >>> first_difference({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}})
    'a.c'
    """
    if isinstance(saved, dict) and isinstance(now, dict):
        for key in list(saved) + [k for k in now if k not in saved]:
            diff = first_difference(saved.get(key), now.get(key), f"{prefix}{key}.")
            if diff:
                return diff
        return None
    return None if saved == now else prefix.rstrip(".")


def prepare_dir(out: Path, cfg: RunConfig, restart: bool) -> None:
    """Check (or reset) the run folder against the saved config, then save this config."""
    saved_path = out / "config.yaml"
    if saved_path.is_file() and not restart:
        try:
            saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise MaltError(
                f"{saved_path}: not valid YAML ({e}); pass --restart to start over"
            ) from None
        diff = first_difference(fingerprint(saved), fingerprint(to_dict(cfg)))
        if diff is not None:
            raise MaltError(
                f"{saved_path}: this run was started with a different {diff}; rerun with the "
                f"same settings to resume, or pass --restart to delete its trees and start over"
            )
    if restart:
        for old in [*out.glob("trees-*.jsonl"), out / "manifest.json", saved_path]:
            old.unlink(missing_ok=True)
    for tmp in out.glob(".trees-*.tmp"):  # a write cut short by a crash
        tmp.unlink()
    save_config(cfg, saved_path)


def shard_done(path: Path, chunk: Sequence[Problem]) -> bool:
    """Whether `path` already holds the trees of exactly this chunk (shards are atomic).

    A shard holding only the first questions of its chunk (the last chunk of a run whose
    `task.limit_train` has since grown) is regenerated."""
    if not path.is_file():
        return False
    ids = [t.problem.id for t in read_trees(path)]
    want = [p.id for p in chunk]
    if len(ids) < len(want) and ids == want[: len(ids)]:
        return False
    if ids != want:
        raise MaltError(
            f"{path}: holds other questions than this chunk of the dataset now gives (did the "
            f"data file change?); pass --restart to start over"
        )
    return True


def tree_stats(task: Task, trees: Sequence[Tree]) -> dict[str, int]:
    """Totals of one shard: trees, leaves, correct leaves (graded here), generated tokens."""
    leaves = [(leaf, t.problem) for t in trees for leaf in t.by_role(REFINER)]
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
    return {
        "run_dir": str(out),
        "shards": len(shards),
        "trees": total["trees"],
        "leaves": leaves,
        "mean_leaf_reward": round(total["correct_leaves"] / leaves, 4) if leaves else None,
        "tokens": total["tokens"],
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
            "models": {role: describe_model(cfg.models.for_role(role)) for role in ROLES},
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
