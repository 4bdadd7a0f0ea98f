"""Guarding the test split: refuse the trees' own split, count question overlap.

Two checks. `check_not_training_split` refuses an evaluation source that is the file (same
resolved path or same sha256) or Hub split the trees were generated from, as recorded in the
generate stage's saved `config.yaml` and `manifest.json` (and the run's own `task.train`).
`question_overlap` counts evaluation questions whose normalised text also appears in the
training trees, which catches the same question reached through a different file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from malt.errors import MaltError
from malt.records import Problem


def normalise_question(text: str) -> str:
    """Lower case with runs of whitespace collapsed, for overlap checks.

    >>> normalise_question("  What is\\n2 +  2? ")
    'what is 2 + 2?'
    """
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class Source:
    """Where questions came from: a local file (with its sha256) or a Hub id and split."""

    name: str
    split: str | None = None
    sha256: str | None = None

    @property
    def path(self) -> Path | None:
        path = Path(self.name)
        return path.resolve() if path.is_file() else None


def same_source(a: Source, b: Source) -> bool:
    """True when two sources are the same file (path or content) or the same Hub split.

    >>> same_source(Source("org/ds", "test"), Source("org/ds", "train"))
    False
    >>> same_source(Source("x.jsonl", sha256="ab"), Source("y.jsonl", sha256="ab"))
    True
    """
    if a.sha256 and b.sha256:
        return a.sha256 == b.sha256
    if a.path is not None and b.path is not None:
        return a.path == b.path
    if a.path is None and b.path is None:
        return a.name == b.name and a.split == b.split
    return False


def generated_sources(gen_config: dict[str, Any] | None, manifest: Any) -> list[Source]:
    """Every source the generate stage may have read, from its saved config and manifest."""
    out: list[Source] = []
    if isinstance(gen_config, dict):
        task = gen_config.get("task") or {}
        split = (gen_config.get("generate") or {}).get("split", "train")
        key = "test" if split == "test" else "train"
        if task.get(key):
            out.append(Source(str(task[key]), task.get(f"{key}_split", split)))
    # The generate stage's manifest records the file it read as {"dataset": {"path", "sha256"}}.
    dataset = manifest.get("dataset") if isinstance(manifest, dict) else None
    if isinstance(dataset, dict) and isinstance(dataset.get("sha256"), str):
        sha = dataset["sha256"]
        out.append(Source(str(dataset.get("path") or f"file with sha256 {sha[:16]}"), sha256=sha))
    return out


def check_not_training_split(test: Source, training: Sequence[Source], where: str) -> None:
    """Raise MaltError when the evaluation source is one the trees were generated from."""
    for src in training:
        if same_source(test, src):
            raise MaltError(
                f"task.test: {test.name} is the split the training trees were generated from "
                f"(per {where}); evaluate on a held-out test split"
            )


def question_overlap(
    training_questions: Iterable[str], problems: Sequence[Problem], examples: int = 10
) -> dict[str, Any]:
    """How many evaluation problems repeat a training question (normalised text)."""
    seen = {normalise_question(q) for q in training_questions}
    hits = [p.id for p in problems if normalise_question(p.question) in seen]
    return {
        "training_questions": len(seen),
        "eval_questions": len(problems),
        "overlap": len(hits),
        "overlap_fraction": len(hits) / len(problems) if problems else 0.0,
        "examples": hits[:examples],
    }
