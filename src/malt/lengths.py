"""Token lengths of the role datasets against `train.max_length`: measured, never cut silently.

A row is measured the way TRL's trainers tokenize it: its messages chat-formatted by the role
model's tokenizer (`apply_chat_template`). An SFT row is its prompt plus its completion. A
DPO pair is its longer sequence (prompt + chosen, prompt + rejected) and its prompt alone
with the generation prompt. Verdicts:

- "fits": trained as it is;
- "too_long" (SFT): longer than max_length; TRL would cut its end (padded batches, packing)
  or not enforce the limit at all (padding-free), so training leaves it out;
- "prompt_too_long" (DPO): the prompt alone reaches max_length; TRL drops such pairs itself,
  silently;
- "completion_cut" (DPO): TRL's collator would cut the end of the chosen or rejected answer
  (its `truncation_mode="keep_start"`; `"keep_end"` is deprecated in TRL 1.x and would cut
  the system prompt and question instead), so training leaves the pair out.

`malt label` reports these counts before any training (`label/summary.json`, `lengths`), and
`malt train` leaves the same rows out, counted in each phase's metrics.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FITS, TOO_LONG, PROMPT_TOO_LONG, COMPLETION_CUT = ("fits", "too_long", "prompt_too_long",
                                                     "completion_cut")
DROPPED = {"sft": (TOO_LONG,), "dpo": (PROMPT_TOO_LONG, COMPLETION_CUT)}
BATCH = 256  # rows tokenized per call: fast tokenizers encode a batch in parallel
WARN_FRACTION = 0.01  # `malt label` warns when a role loses more than this share of its rows


def chat_lengths(tokenizer: Any, conversations: Sequence[list[dict]],
                 add_generation_prompt: bool = False) -> list[int]:
    """Token count of each conversation, chat-formatted as TRL tokenizes it."""
    if not conversations:
        return []
    out = tokenizer.apply_chat_template(list(conversations), tokenize=True, return_dict=True,
                                        add_generation_prompt=add_generation_prompt)
    return [len(ids) for ids in out["input_ids"]]


def measure(tokenizer: Any, kind: str, rows: Sequence[dict], max_length: int
            ) -> list[tuple[int, str]]:
    """(tokens, verdict) of each SFT row or DPO pair; a pair's tokens: its longer sequence."""
    if kind == "sft":
        lengths = chat_lengths(tokenizer, [r["prompt"] + r["completion"] for r in rows])
        return [(n, FITS if n <= max_length else TOO_LONG) for n in lengths]
    prompts = chat_lengths(tokenizer, [r["prompt"] for r in rows], add_generation_prompt=True)
    chosen = chat_lengths(tokenizer, [r["prompt"] + r["chosen"] for r in rows])
    rejected = chat_lengths(tokenizer, [r["prompt"] + r["rejected"] for r in rows])
    out = []
    for p, c, r in zip(prompts, chosen, rejected, strict=True):
        n = max(c, r)
        verdict = PROMPT_TOO_LONG if p >= max_length else COMPLETION_CUT if n > max_length else FITS
        out.append((n, verdict))
    return out


def nearest_rank(sorted_values: Sequence[int], q: float) -> int | None:
    """The q-quantile of ascending values by the nearest-rank rule (None when empty).

    >>> [nearest_rank(list(range(1, 101)), q) for q in (0.5, 0.95, 1.0)]
    [50, 95, 100]
    >>> nearest_rank([], 0.5) is None
    True
    """
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


@dataclass
class LengthTally:
    """Lengths and verdicts of one role's SFT rows or DPO pairs."""

    kind: str  # "sft" | "dpo"
    max_length: int
    lengths: list[int] = field(default_factory=list)
    verdicts: Counter = field(default_factory=Counter)

    def add(self, measured: Iterable[tuple[int, str]]) -> None:
        for n, verdict in measured:
            self.lengths.append(n)
            self.verdicts[verdict] += 1

    @property
    def dropped(self) -> int:
        return sum(self.verdicts[v] for v in DROPPED[self.kind])

    def to_dict(self) -> dict[str, Any]:
        """p50 / p95 / max tokens and what training leaves out, by reason.

        >>> t = LengthTally("dpo", 10)
        >>> t.add([(4, FITS), (12, COMPLETION_CUT), (30, PROMPT_TOO_LONG), (6, FITS)])
        >>> t.to_dict()  # doctest: +NORMALIZE_WHITESPACE
        {'rows': 4, 'p50': 6, 'p95': 30, 'max': 30, 'max_length': 10, 'kept': 2, 'dropped': 2,
         'dropped_fraction': 0.5, 'prompt_too_long': 1, 'completion_cut': 1}
        """
        values = sorted(self.lengths)
        total = len(values)
        return {
            "rows": total,
            "p50": nearest_rank(values, 0.5),
            "p95": nearest_rank(values, 0.95),
            "max": values[-1] if values else None,
            "max_length": self.max_length,
            "kept": total - self.dropped,
            "dropped": self.dropped,
            "dropped_fraction": round(self.dropped / total, 6) if total else 0.0,
            **{v: self.verdicts[v] for v in DROPPED[self.kind]},
        }


class LengthMeter:
    """Measures rows as they stream past, in batches; keeps only lengths and verdicts.

    A tokenizer that fails on the rows (a chat template that refuses a system message, say)
    ends the measuring with a note; the stage that streams the rows goes on.
    """

    def __init__(self, tokenizer: Any, kind: str, max_length: int):
        self.tokenizer, self.tally, self._buffer = tokenizer, LengthTally(kind, max_length), []
        self.note: str | None = None

    def add(self, row: dict) -> None:
        if self.note is None:
            self._buffer.append(row)
            if len(self._buffer) >= BATCH:
                self.flush()

    def flush(self) -> None:
        rows, self._buffer = self._buffer, []
        if rows and self.note is None:
            try:
                measured = measure(self.tokenizer, self.tally.kind, rows, self.tally.max_length)
            except Exception as e:  # noqa: BLE001 - a length report never stops a stage
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                self.note = f"lengths not measured: the chat template failed ({first})"
                return
            self.tally.add(measured)

    def to_dict(self) -> dict[str, Any]:
        self.flush()
        return {"note": self.note} if self.note else self.tally.to_dict()


def split_by_fit(tokenizer: Any, kind: str, rows: Sequence[dict], max_length: int
                 ) -> tuple[list[int], LengthTally]:
    """Indices of the rows that fit `max_length`, and the tally of all of them."""
    tally, keep = LengthTally(kind, max_length), []
    for start in range(0, len(rows), BATCH):
        measured = measure(tokenizer, kind, rows[start:start + BATCH], max_length)
        tally.add(measured)
        keep.extend(start + i for i, (_, verdict) in enumerate(measured) if verdict == FITS)
    return keep, tally


def warning_lines(lengths: dict[str, Any], threshold: float = WARN_FRACTION) -> list[str]:
    """One sentence per role and kind whose configured max_length leaves out too many rows.

    >>> report = {"verifier": {"tokenizer": "m", "sft": {"rows": 100, "p95": 9, "max": 20,
    ...     "max_length": 8, "dropped": 3, "dropped_fraction": 0.03}}}
    >>> warning_lines(report)  # doctest: +NORMALIZE_WHITESPACE
    ['train.max_length=8 would leave out 3 of 100 verifier SFT rows (3.0%; p95 9, max 20
      tokens): raise train.max_length to keep them']
    """
    lines = []
    for role, kinds in lengths.items():
        for kind, t in kinds.items() if isinstance(kinds, dict) else ():
            if not isinstance(t, dict) or t.get("dropped_fraction", 0) <= threshold:
                continue
            what = "SFT rows" if kind == "sft" else "DPO pairs"
            lines.append(f"train.max_length={t['max_length']} would leave out {t['dropped']} of "
                         f"{t['rows']} {role} {what} ({100 * t['dropped_fraction']:.1f}%; "
                         f"p95 {t['p95']}, max {t['max']} tokens): raise train.max_length to "
                         f"keep them")
    return lines


def load_tokenizer(model: str, *, trust_remote_code: bool = False,
                   revision: str | None = None) -> tuple[Any, str | None]:
    """(tokenizer, None), or (None, "lengths not measured: <reason>") when it cannot load.

    Only the tokenizer is loaded (no weights): a local folder, else the Hugging Face cache
    (where `malt generate` put it), else the Hub. Any failure (no network for an uncached Hub
    id, a missing folder, no chat template) becomes a note: a length report never stops a stage.
    """
    from transformers import AutoTokenizer

    if model.startswith(("/", ".", "~")) and not Path(model).expanduser().is_dir():
        return None, f"lengths not measured: {model}: no such model folder"
    kwargs = {"trust_remote_code": trust_remote_code, "revision": revision}
    try:
        try:
            tok = AutoTokenizer.from_pretrained(model, local_files_only=True, **kwargs)
        except OSError:
            tok = AutoTokenizer.from_pretrained(model, **kwargs)
    except Exception as e:  # noqa: BLE001 - any loader failure is reported, not raised
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return None, f"lengths not measured: cannot load the tokenizer of {model!r} ({first})"
    if not getattr(tok, "chat_template", None):
        return None, f"lengths not measured: the tokenizer of {model!r} has no chat template"
    return tok, None
