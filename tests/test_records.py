"""Tree records: deterministic ids, round-trip serialization, shape checks."""

from __future__ import annotations

import pytest

from conftest import make_tree
from malt.errors import MaltError
from malt.records import Branching, Tree, child_id


def test_ids_follow_the_path():
    tree = make_tree([[[1, 0], [0, 1]]], pid="p")
    assert [n.id for n in tree.nodes] == [
        "p/g0", "p/g0/v0", "p/g0/v0/r0", "p/g0/v0/r1", "p/g0/v1", "p/g0/v1/r0", "p/g0/v1/r1",
    ]
    assert child_id("p/g0", "v", 1) == "p/g0/v1"


def test_round_trip():
    tree = make_tree([[[1, 0, 1]] * 2] * 3)
    again = Tree.from_dict(tree.to_dict())
    assert again == tree
    assert again.branching == Branching(3, 2, 3)


def test_wrong_schema_version():
    row = make_tree([[[1]]]).to_dict()
    row["schema_version"] = 99
    with pytest.raises(MaltError, match="schema_version 99"):
        Tree.from_dict(row)


def test_shape_contradicting_branching():
    row = make_tree([[[1, 0], [1, 1]]]).to_dict()
    row["branching"]["n_r"] = 3
    with pytest.raises(MaltError, match=r"has 4 refiner nodes but its branching 1x2x3 needs 6"):
        Tree.from_dict(row)


def test_node_missing_its_parent():
    row = make_tree([[[1, 0]]]).to_dict()
    row["nodes"][2]["parent_id"] = "toy-1/g0/v7"
    with pytest.raises(MaltError, match="needs its parent listed before it"):
        Tree.from_dict(row)


def test_duplicate_node_id():
    row = make_tree([[[1, 0]]]).to_dict()
    row["nodes"][3]["id"] = row["nodes"][2]["id"]
    with pytest.raises(MaltError, match="appears twice"):
        Tree.from_dict(row)


def test_missing_field_is_named():
    row = make_tree([[[1]]]).to_dict()
    del row["problem"]
    with pytest.raises(MaltError, match="missing field 'problem'"):
        Tree.from_dict(row)
