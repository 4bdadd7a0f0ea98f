"""Content fingerprints and the one rerun policy every stage shares."""

from __future__ import annotations

import doctest

import pytest

from malt import fingerprint
from malt.errors import MaltError
from malt.fingerprint import (
    check_unchanged,
    folder_fingerprint,
    model_fingerprint,
    spec_fingerprint,
)


def test_doctests():
    assert doctest.testmod(fingerprint).failed == 0


def test_an_adapter_folder_changes_with_any_file_but_not_with_temporary_ones(tmp_path):
    folder = tmp_path / "final"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"r": 8}')
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    first = folder_fingerprint(folder)
    assert first.startswith("sha256:") and first == folder_fingerprint(folder)
    (folder / ".adapter_model.safetensors.abc.tmp").write_bytes(b"half written")
    assert folder_fingerprint(folder) == first
    (folder / "adapter_model.safetensors").write_bytes(b"retrained")
    assert folder_fingerprint(folder) != first
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    (folder / "tokenizer.json").write_text("{}")
    assert folder_fingerprint(folder) != first


def test_the_same_bytes_elsewhere_are_the_same_adapter(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text("{}")
    assert folder_fingerprint(tmp_path / "a") == folder_fingerprint(tmp_path / "b")


def test_a_local_model_is_its_config_and_weights_and_a_hub_id_stays_an_id(tmp_path):
    assert model_fingerprint("meta-llama/Llama-3.1-8B") == "meta-llama/Llama-3.1-8B"
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 8}')
    (model / "model.safetensors").write_bytes(b"w0")
    first = model_fingerprint(str(model))
    (model / "README.md").write_text("notes")  # not part of what the model computes
    assert model_fingerprint(str(model)) == first
    (model / "model.safetensors").write_bytes(b"w1")
    assert model_fingerprint(str(model)) != first
    assert spec_fingerprint("hub/model", None) == {"model": "hub/model", "adapter": None}


def test_a_changed_input_is_one_sentence_naming_it_and_restart(tmp_path):
    recorded = {"the setting seed": 0, "label/sft_verifier.jsonl": "aa"}
    check_unchanged(recorded, dict(recorded), tmp_path / "m.json", "it ran", "redo it")
    now = {**recorded, "label/sft_verifier.jsonl": "bb"}
    with pytest.raises(MaltError, match=r"m.json: label/sft_verifier.jsonl changed since it "
                                        r"ran; .* pass --restart to redo it"):
        check_unchanged(recorded, now, tmp_path / "m.json", "it ran", "redo it")
    with pytest.raises(MaltError, match="no record of the inputs it ran with"):
        check_unchanged(None, now, tmp_path / "m.json", "it ran", "redo it")
    grown = {**recorded, "the refiner's final adapter": "cc"}
    check_unchanged(recorded, grown, tmp_path / "m.json", "it ran", "redo it", common_only=True)
    with pytest.raises(MaltError, match="the refiner's final adapter changed"):
        check_unchanged(recorded, grown, tmp_path / "m.json", "it ran", "redo it")
