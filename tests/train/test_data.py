"""Role dataset loading: TRL conversational rows, checked with file:line errors."""

from __future__ import annotations

import doctest
import json

import pytest

import malt.train.data
import malt.train.settings
from malt.errors import MaltError
from malt.io import write_jsonl
from malt.train.data import dataset_path, keep_fitting_rows, load_dataset
from malt.train.synthetic import dpo_rows, sft_rows


@pytest.mark.parametrize("module", [malt.train.data, malt.train.settings])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


def test_loads_sft_and_dpo_rows(tmp_path):
    write_jsonl(tmp_path / "sft_verifier.jsonl", sft_rows("verifier", 3))
    write_jsonl(tmp_path / "dpo_verifier.jsonl", dpo_rows("verifier", 2))
    sft = load_dataset(tmp_path, "sft", "verifier")
    dpo = load_dataset(tmp_path, "dpo", "verifier")
    assert sft.column_names == ["prompt", "completion"] and len(sft) == 3
    assert dpo.column_names == ["prompt", "chosen", "rejected"] and len(dpo) == 2
    assert sft[1]["completion"] == [{"role": "assistant", "content": "1 + 1 = 2. Final: 2"}]


def test_extra_columns_are_dropped(tmp_path):
    rows = [dict(r, score=1.0, tree_id="t0") for r in sft_rows("generator", 2)]
    write_jsonl(tmp_path / "sft_generator.jsonl", rows)
    assert load_dataset(tmp_path, "sft", "generator").column_names == ["prompt", "completion"]


def test_empty_file_gives_an_empty_dataset(tmp_path):
    (tmp_path / "dpo_refiner.jsonl").write_text("")
    ds = load_dataset(tmp_path, "dpo", "refiner")
    assert len(ds) == 0 and ds.column_names == ["prompt", "chosen", "rejected"]


def test_malformed_row_names_file_and_line(tmp_path):
    rows = dpo_rows("verifier", 3)
    rows[1]["chosen"] = [{"role": "user", "content": "hi"}]
    write_jsonl(tmp_path / "dpo_verifier.jsonl", rows)
    with pytest.raises(MaltError, match=r"dpo_verifier\.jsonl:2: chosen: expected one assistant"):
        load_dataset(tmp_path, "dpo", "verifier")


def test_missing_column_and_bad_json(tmp_path):
    path = tmp_path / "sft_refiner.jsonl"
    path.write_text(json.dumps({"prompt": sft_rows("refiner", 1)[0]["prompt"]}) + "\n")
    with pytest.raises(MaltError, match=r"sft_refiner\.jsonl:1: missing column 'completion'"):
        load_dataset(tmp_path, "sft", "refiner")
    path.write_text("{not json\n")
    with pytest.raises(MaltError, match=r"sft_refiner\.jsonl:1: not valid JSON"):
        load_dataset(tmp_path, "sft", "refiner")


def test_missing_file_says_what_to_run(tmp_path):
    with pytest.raises(MaltError, match=r"sft_generator\.jsonl: no such file .*malt label"):
        load_dataset(tmp_path, "sft", "generator")


def test_parquet_rows_are_checked_too(tmp_path):
    from datasets import Dataset

    rows = sft_rows("generator", 3)
    Dataset.from_list(rows).to_parquet(str(dataset_path(tmp_path, "sft", "generator", "parquet")))
    ds = load_dataset(tmp_path, "sft", "generator", "parquet")
    assert ds[2]["prompt"] == rows[2]["prompt"]
    bad = [dict(rows[0], completion="just text")]
    Dataset.from_list(bad).to_parquet(str(dataset_path(tmp_path, "sft", "verifier", "parquet")))
    with pytest.raises(MaltError,
                       match=r"sft_verifier\.parquet:row 1: completion: expected a list"):
        load_dataset(tmp_path, "sft", "verifier", "parquet")


def test_keep_fitting_rows_counts_rows_over_max_length(tmp_path, tiny_model):
    from datasets import Dataset

    from malt.train.lora import load_tokenizer

    tok = load_tokenizer(str(tiny_model))
    rows = sft_rows("generator", 2)
    rows[1]["completion"][0]["content"] = "x" * 500  # a character tokenizer: 500+ tokens
    kept, report = keep_fitting_rows(Dataset.from_list(rows), tok, "sft", 200)
    assert report["dropped"] == report["too_long"] == 1 and report["rows"] == 2
    assert len(kept) == 1 and kept[0]["prompt"] == rows[0]["prompt"]
    pairs = dpo_rows("verifier", 3)
    pairs[0]["prompt"][1]["content"] = "x" * 500
    kept, report = keep_fitting_rows(Dataset.from_list(pairs), tok, "dpo", 200)
    assert report["prompt_too_long"] == 1 and report["completion_cut"] == 0
    assert [r["prompt"] for r in kept] == [p["prompt"] for p in pairs[1:]]
