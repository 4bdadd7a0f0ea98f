"""I/O helpers: JSONL errors name file:line, atomic writes leave nothing half-written."""

from __future__ import annotations

import pytest

from conftest import make_tree
from malt.errors import MaltError
from malt.io import DatasetWriter, atomic_open, read_jsonl, read_trees, sha256_file, write_trees


def test_read_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": \n')
    rows = read_jsonl(path)
    assert next(rows) == (1, {"a": 1})
    assert next(rows) == (3, {"a": 2})
    with pytest.raises(MaltError, match=r"rows.jsonl:4: not valid JSON"):
        next(rows)


def test_read_jsonl_rejects_non_objects_and_missing_files(tmp_path):
    (tmp_path / "list.jsonl").write_text("[1, 2]\n")
    with pytest.raises(MaltError, match=r"list.jsonl:1: expected a JSON object, got list"):
        list(read_jsonl(tmp_path / "list.jsonl"))
    with pytest.raises(MaltError, match="no such file"):
        list(read_jsonl(tmp_path / "nope.jsonl"))


def test_atomic_open_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write("new, half")
        raise RuntimeError("crash mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_trees_round_trip_through_shards(tmp_path):
    trees = [make_tree([[[1, 0]]], pid=f"p{i}") for i in range(3)]
    write_trees(tmp_path / "trees-00000.jsonl", trees[:2])
    write_trees(tmp_path / "trees-00001.jsonl", trees[2:])
    assert list(read_trees(tmp_path)) == trees
    (tmp_path / "empty").mkdir()
    with pytest.raises(MaltError, match="no trees-"):
        list(read_trees(tmp_path / "empty"))


def test_dataset_writer_only_publishes_on_close(tmp_path):
    w = DatasetWriter(tmp_path / "sft_refiner", "jsonl")
    w.write({"prompt": [], "completion": []})
    assert not (tmp_path / "sft_refiner.jsonl").exists()
    assert w.close() == tmp_path / "sft_refiner.jsonl"
    assert (tmp_path / "sft_refiner.jsonl").read_text().count("\n") == 1
    w2 = DatasetWriter(tmp_path / "dpo_refiner", "jsonl")
    w2.write({"x": 1})
    w2.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sft_refiner.jsonl"]


def test_empty_parquet_keeps_its_columns(tmp_path):
    import pyarrow.parquet as pq

    path = DatasetWriter(tmp_path / "dpo_verifier", "parquet", ("prompt", "chosen", "rejected")).close()
    table = pq.read_table(path)
    assert table.num_rows == 0 and table.column_names == ["prompt", "chosen", "rejected"]


def test_sha256_prefix(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc" * 1000)
    assert sha256_file(path) != sha256_file(path, limit_bytes=3)
    assert sha256_file(path, limit_bytes=3) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
