"""What a task is: a loader, role prompts, an answer extractor and an equivalence check.

A task is data plus three functions, not a class hierarchy: each task module builds one
`Task` value from its own functions and prompt texts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from malt.chain import SLOTS
from malt.errors import MaltError
from malt.records import Messages, Problem

# (row, where) -> Problem; `where` is "file:line" or "hub-id[split] row i", for errors.
RowParser = Callable[[dict[str, Any], str], Problem]


@dataclass(frozen=True)
class RolePrompts:
    """The task's templates: a system prompt and a user-turn template per template kind.

    User templates use `{question}` and the slots of their kind (`malt.chain.SLOTS`):
    `{answer}` (the answer under review) and `{critique}` (a critique of it). A slot left
    empty by the chain (a refiner with no verifier before it) shows `absent`.
    """

    generator_system: str
    verifier_system: str
    refiner_system: str
    generator_user: str = "{question}"
    verifier_user: str = "Question:\n{question}\n\nInitial answer:\n{answer}"
    refiner_user: str = (
        "Question:\n{question}\n\nInitial answer:\n{answer}\n\nCritique:\n{critique}"
    )
    absent: str = "(none)"

    def template(self, kind: str) -> tuple[str, str]:
        """(system prompt, user template) of a template kind."""
        if kind not in SLOTS:
            raise MaltError(f"unknown template {kind!r} (known: {', '.join(SLOTS)})")
        return getattr(self, f"{kind}_system"), getattr(self, f"{kind}_user")


@dataclass(frozen=True)
class Task:
    """A benchmark: how to load it, prompt each role, and grade an answer."""

    name: str
    parse_row: RowParser
    extract_fn: Callable[[str], str | None]
    equivalent_fn: Callable[[str, str], bool]
    prompts: RolePrompts
    default_hub_id: str | None = None
    default_hub_config: str | None = None
    # What later roles see of earlier outputs: `{answer}` and `{critique}` in the templates
    # are these views of the texts (None: the whole text, the paper's setting).
    answer_view: Callable[[str], str] | None = None
    critique_view: Callable[[str], str] | None = None
    # The answer a critique states itself, where the task's verifier states one (turn-wise
    # accuracy after V); None: critiques state no answer.
    critique_answer_fn: Callable[[str], str | None] | None = None
    # Whether a critique calls the reviewed answer wrong (True), right (False) or says
    # neither (None), where the task can read a verdict; None: it cannot (diagnostics only).
    critique_flags_fn: Callable[[str], bool | None] | None = None

    def load(
        self,
        source: str,
        split: str = "train",
        hub_config: str | None = None,
        limit: int | None = None,
    ) -> list[Problem]:
        """Problems from a local JSONL/Parquet file or a Hugging Face Hub dataset id."""
        problems: list[Problem] = []
        seen: dict[str, int] = {}
        for where, row in iter_rows(source, split, hub_config or self.default_hub_config):
            if limit is not None and len(problems) >= limit:
                break
            p = self.parse_row(row, where)
            # Duplicate questions in one file keep distinct, still deterministic ids.
            count = seen.get(p.id, 0)
            seen[p.id] = count + 1
            if count:
                p = Problem(id=f"{p.id}-{count + 1}", question=p.question, answer=p.answer,
                            task=p.task, meta=p.meta)
            problems.append(p)
        return problems

    def extract_answer(self, text: str) -> str | None:
        """The final answer stated in a model output, or None when there is none."""
        return self.extract_fn(text)

    def is_equivalent(self, pred: str, gold: str) -> bool:
        """Whether two answer strings mean the same answer for this task."""
        return self.equivalent_fn(pred, gold)

    def critique_answer(self, text: str) -> str | None:
        """The answer a critique states itself, or None (also for tasks whose V states none)."""
        return None if self.critique_answer_fn is None else self.critique_answer_fn(text)

    def critique_flags(self, text: str) -> bool | None:
        """The critique's verdict on the answer it reviewed: wrong (True), right (False), or
        None (no verdict, or a task whose verdicts it cannot read)."""
        return None if self.critique_flags_fn is None else self.critique_flags_fn(text)

    def reward(self, completion: str, problem: Problem) -> int:
        """1 when the completion's final answer matches the problem's gold answer, else 0."""
        pred = self.extract_answer(completion)
        return int(pred is not None and self.is_equivalent(pred, problem.answer))

    def messages(
        self,
        template: str,
        problem: Problem,
        answer: str | None = None,
        critique: str | None = None,
    ) -> Messages:
        """The chat messages of a `template` kind on `problem`, its slots filled with the
        earlier outputs given (through the task's views); an empty slot shows `absent`."""
        system, user = self.prompts.template(template)
        if answer is not None and self.answer_view is not None:
            answer = self.answer_view(answer)
        if critique is not None and self.critique_view is not None:
            critique = self.critique_view(critique)
        absent = self.prompts.absent
        content = user.format(question=problem.question,
                              answer=absent if answer is None else answer,
                              critique=absent if critique is None else critique)
        return [{"role": "system", "content": system}, {"role": "user", "content": content}]


def stable_id(task: str, text: str) -> str:
    """A short content-derived id: the same question always gets the same id.

    >>> stable_id("gsm8k", "What is 2+2?")
    'gsm8k-52cb6b5e4a03'
    """
    return f"{task}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}"


def iter_rows(
    source: str, split: str = "train", hub_config: str | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (where, row) from a local .jsonl/.json/.parquet file or a Hub dataset id."""
    path = Path(source)
    if path.exists():
        yield from _iter_local(path)
        return
    if path.suffix in (".jsonl", ".json", ".parquet") or "/" not in source or source.startswith((".", "/")):
        raise MaltError(f"{source}: no such file (and it does not look like a Hub dataset id)")
    yield from _iter_hub(source, split, hub_config)


def _iter_local(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    from malt.io import read_jsonl

    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        for i, row in enumerate(table.to_pylist(), start=1):
            yield f"{path} row {i}", row
    elif path.suffix in (".jsonl", ".json"):
        for lineno, row in read_jsonl(path):
            yield f"{path}:{lineno}", row
    else:
        raise MaltError(f"{path}: unsupported file type (use .jsonl or .parquet)")


def _iter_hub(dataset_id: str, split: str, hub_config: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
    # Real loading code for users with network access; CI has no hub access.
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, hub_config, split=split)
    except Exception as e:  # noqa: BLE001 - any hub failure becomes one sentence
        raise MaltError(f"{dataset_id}[{split}]: could not load from the Hugging Face Hub ({e})") from None
    for i, row in enumerate(ds):
        yield f"{dataset_id}[{split}] row {i}", dict(row)


def field_str(row: dict[str, Any], key: str, where: str) -> str:
    """A required non-empty string field of a row; errors name the place and the field."""
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        state = "missing" if value is None else "empty" if isinstance(value, str) else "not a string"
        raise MaltError(f"{where}: field {key!r} is {state}")
    return value
