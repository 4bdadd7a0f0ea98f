"""Length accounting: rows measured as TRL tokenizes them, verdicts, notes instead of failures."""

from __future__ import annotations

import doctest

import pytest

import malt.lengths
from malt.embedded.tiny import build_tokenizer
from malt.lengths import (
    COMPLETION_CUT,
    FITS,
    PROMPT_TOO_LONG,
    TOO_LONG,
    LengthMeter,
    chat_lengths,
    load_tokenizer,
    measure,
    split_by_fit,
)
from malt.train.synthetic import dpo_rows, sft_rows


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()  # character-level: one token per character


def one_length(tok, messages, **kw) -> int:
    return len(tok.apply_chat_template(messages, tokenize=True, return_dict=True, **kw)["input_ids"])


def test_doctests():
    assert doctest.testmod(malt.lengths).failed == 0


def test_batched_lengths_equal_one_at_a_time(tok):
    rows = sft_rows("generator", 3)
    rows[1]["completion"][0]["content"] += " much longer" * 20
    convs = [r["prompt"] + r["completion"] for r in rows]
    assert chat_lengths(tok, convs) == [one_length(tok, c) for c in convs]
    assert chat_lengths(tok, []) == []


def test_sft_rows_over_max_length_are_too_long(tok):
    rows = sft_rows("generator", 2)
    n = one_length(tok, rows[0]["prompt"] + rows[0]["completion"])
    assert measure(tok, "sft", rows[:1], n) == [(n, FITS)]  # exactly max_length fits
    assert measure(tok, "sft", rows[:1], n - 1) == [(n, TOO_LONG)]


def test_dpo_pairs_by_prompt_and_by_their_longer_answer(tok):
    row = dpo_rows("verifier", 1)[0]
    prompt = one_length(tok, row["prompt"], add_generation_prompt=True)
    chosen = one_length(tok, row["prompt"] + row["chosen"])
    rejected = one_length(tok, row["prompt"] + row["rejected"])
    longest = max(chosen, rejected)
    assert chosen > rejected  # "Wrong, it is ..." vs "Correct."
    assert measure(tok, "dpo", [row], longest) == [(longest, FITS)]
    # Only the chosen answer runs over: the pair would be trained with a cut-off answer.
    assert measure(tok, "dpo", [row], rejected) == [(longest, COMPLETION_CUT)]
    # The prompt alone fills max_length: TRL would drop the pair silently.
    assert measure(tok, "dpo", [row], prompt) == [(longest, PROMPT_TOO_LONG)]


def test_split_by_fit_counts_add_up_and_keeps_order(tok):
    rows = dpo_rows("refiner", 5)
    rows[1]["rejected"][0]["content"] = "z" * 400
    rows[3]["prompt"][1]["content"] = "q" * 400
    keep, tally = split_by_fit(tok, "dpo", rows, 200)
    report = tally.to_dict()
    assert keep == [0, 2, 4]
    assert report["completion_cut"] == 1 and report["prompt_too_long"] == 1
    assert report["kept"] + report["dropped"] == report["rows"] == 5
    assert report["max"] > 400 and report["p50"] < 200


def test_meter_streams_in_batches_to_the_same_report(tok, monkeypatch):
    monkeypatch.setattr(malt.lengths, "BATCH", 3)
    rows = sft_rows("refiner", 8)
    rows[5]["completion"][0]["content"] = "y" * 300
    meter = LengthMeter(tok, "sft", 200)
    for row in rows:
        meter.add(row)
    _, tally = split_by_fit(tok, "sft", rows, 200)
    assert meter.to_dict() == tally.to_dict()
    assert meter.to_dict()["too_long"] == 1


def test_unloadable_tokenizers_become_notes(tmp_path):
    tok, note = load_tokenizer(str(tmp_path / "missing"))
    assert tok is None and note.startswith("lengths not measured:") and "no such" in note
    bare = build_tokenizer()
    bare.chat_template = None
    bare.save_pretrained(tmp_path / "bare")
    tok, note = load_tokenizer(str(tmp_path / "bare"))
    assert tok is None and "no chat template" in note
    tok, note = load_tokenizer(str(tmp_path))  # a folder with no tokenizer in it
    assert tok is None and note.startswith("lengths not measured: cannot load the tokenizer")


def test_a_failing_chat_template_ends_measuring_with_a_note(tok):
    strict = build_tokenizer()
    strict.chat_template = "{{ raise_exception('System role not supported') }}"
    meter = LengthMeter(strict, "sft", 200)
    for row in sft_rows("generator", 3):
        meter.add(row)
    assert meter.to_dict() == {
        "note": "lengths not measured: the chat template failed (System role not supported)"}
