"""I/O helpers: JSONL errors name file:line, atomic writes leave nothing half-written."""

from __future__ import annotations

import json
import re

import pytest

from conftest import make_tree
from malt.errors import MaltError
from malt.io import (
    DatasetWriter,
    atomic_open,
    iter_tree_lines,
    read_jsonl,
    read_trees,
    sha256_file,
    write_trees,
)


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


def _shard_lines(tmp_path, n=3):
    trees = [make_tree([[[1, 0]]], pid=f"p{i}") for i in range(n)]
    path = tmp_path / "trees-00000.jsonl"
    write_trees(path, trees)
    return path, path.read_bytes().splitlines(keepends=True)


def test_a_non_utf8_line_is_named_and_the_other_trees_still_read(tmp_path):
    path, lines = _shard_lines(tmp_path)
    lines[1] = lines[1].replace(b"crit 0", b"crit \xff")
    path.write_bytes(b"".join(lines))
    items = list(iter_tree_lines(path))
    assert [getattr(i, "problem", None) and i.problem.id for i in items] == ["p0", None, "p2"]
    assert re.fullmatch(rf"{re.escape(str(path))}:2: not valid UTF-8 \(byte 0xff at column \d+\)",
                        str(items[1]))
    with pytest.raises(MaltError, match=r"trees-00000.jsonl:2: not valid UTF-8"):
        list(read_jsonl(path))


WRONG_TYPES = {
    "int completion": (lambda row: row["nodes"][0].update(completion=7),
                       "field 'completion' is not a string"),
    "null completion": (lambda row: row["nodes"][-1].update(completion=None),
                        "field 'completion' is not a string"),
    "int node id": (lambda row: row["nodes"][0].update(id=3), "field 'id' is not a string"),
    "string prompt": (lambda row: row["nodes"][1].update(prompt="hi"),
                      "field 'prompt' is not a list of messages"),
    "int gold": (lambda row: row["problem"].update(answer=42), "field 'answer' is not a string"),
    "no refinements": (lambda row: row["branching"].update(n_r=0),
                       "branching n_r must be an integer >= 1"),
    "string branching": (lambda row: row["branching"].update(n_g="1"),
                         "branching n_g must be an integer >= 1"),
}


@pytest.mark.parametrize(("change", "reason"), WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_a_tree_with_a_field_of_the_wrong_type_is_named(tmp_path, change, reason):
    path, lines = _shard_lines(tmp_path)
    row = json.loads(lines[0])
    change(row)
    lines[0] = (json.dumps(row) + "\n").encode()
    path.write_bytes(b"".join(lines))
    items = list(iter_tree_lines(path))
    assert isinstance(items[0], MaltError) and f"{path}:1: " in str(items[0])
    assert reason in str(items[0])
    assert [t.problem.id for t in items[1:]] == ["p1", "p2"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
        ('{"a": ' + "1" * 5000 + "}", "not valid JSON"),
    ],
    ids=["deeply nested", "5000-digit number"],
)
def test_lines_json_cannot_hold_safely_are_named(tmp_path, text, reason):
    path, lines = _shard_lines(tmp_path, n=1)
    path.write_bytes(lines[0] + text.encode() + b"\n")
    items = list(iter_tree_lines(path))
    assert items[0].problem.id == "p0"
    assert isinstance(items[1], MaltError) and str(items[1]).startswith(f"{path}:2: {reason}")


def test_a_lone_surrogate_escape_is_named_before_it_can_break_a_writer(tmp_path):
    # JSON may escape half a surrogate pair; such a string cannot be written back as UTF-8.
    path, lines = _shard_lines(tmp_path, n=2)
    lines[1] = lines[1].replace(b"crit 0", b"crit \\ud800", 1)
    path.write_bytes(b"".join(lines))
    items = list(iter_tree_lines(path))
    assert items[0].problem.id == "p0"
    assert str(items[1]).startswith(f"{path}:2: not valid Unicode (a lone surrogate")
