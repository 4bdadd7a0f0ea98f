"""The embedded base: the shipped model is in the accuracy band; the builder still works.

The full build takes longer than this test's budget on 2 cores, so the band is checked on the
shipped model (its build report and a fresh measurement), and the builder runs reduced.
"""

from __future__ import annotations

import json

import pytest

from malt.embedded import ASSETS, REPORT, base_model_path, is_complete
from malt.embedded.build import BuildConfig, build, main
from malt.embedded.probe import ProbeConfig, probe
from malt.embedded.tiny import TinySize

BAND = (0.35, 0.75)  # base G accuracy at the recommended sampling temperature


def _report() -> dict:
    return json.loads((ASSETS / REPORT).read_text())


def test_shipped_base_is_a_standard_folder():
    assert is_complete(ASSETS), "the built base must ship in src/malt/embedded/assets/base"
    assert base_model_path(build_if_missing=False) == ASSETS
    names = {f.name for f in ASSETS.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names
    assert sum(f.stat().st_size for f in ASSETS.iterdir()) < 10 * 2**20


def test_shipped_base_is_in_the_band():
    measured = _report()["probe"]
    assert measured["n"] >= 300  # held-out test questions, at the demo's temperature
    assert measured["temperature"] == 0.7
    assert BAND[0] <= measured["generator_acc"] <= BAND[1]
    assert measured["chain_acc_sampled"] < 1.0  # an untrained G->V->R chain is not perfect


def test_shipped_base_verifier_carries_signal():
    v = _report()["probe"]["verifier_sampled"]
    assert v["tpr"] - v["fpr"] >= 0.30


def test_shipped_base_chain_is_at_least_as_accurate_as_g():
    measured = _report()["probe"]
    assert measured["chain_acc_sampled"] >= measured["generator_acc"]
    assert measured["refiner_fixed_sampled"] >= measured["refiner_broke_sampled"]


@pytest.mark.slow
def test_shipped_base_measures_as_reported():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ASSETS)
    model = AutoModelForCausalLM.from_pretrained(ASSETS, dtype=torch.float32).eval()
    got = probe(model, tok, ProbeConfig(n=100, temperature=0.7, seed=11))
    reported = _report()["probe"]
    # 100 fresh test questions against the build's 300: agree up to sampling noise.
    assert abs(got["generator_acc"] - reported["generator_acc"]) < 0.15
    assert abs(got["generator_acc_greedy"] - reported["generator_acc_greedy"]) < 0.12
    assert BAND[0] - 0.1 <= got["generator_acc"] <= BAND[1] + 0.1
    # The verifier's signal holds on fresh questions too (reported: TPR - FPR >= 0.30).
    v = got["verifier_sampled"]
    assert v["tpr"] - v["fpr"] >= 0.2


@pytest.mark.slow
def test_reduced_build_is_deterministic_and_learns(tmp_path):
    cfg = BuildConfig(seed=3, max_steps=40, batch_size=8, warmup=10, threads=1, min_steps=20,
                      check_every=20, check_n=8, target_acc=1.1,
                      size=TinySize(hidden_size=64, intermediate_size=128, num_hidden_layers=2),
                      probe=ProbeConfig(n=8, batch_size=8))
    a = build(tmp_path / "a", cfg, log=lambda _: None)
    b = build(tmp_path / "b", cfg, log=lambda _: None)
    assert is_complete(tmp_path / "a")
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == \
        (tmp_path / "b" / "model.safetensors").read_bytes()
    assert a["train"]["final_loss"] == b["train"]["final_loss"]
    assert a["train"]["final_loss"] < a["train"]["first_loss"] - 1.0  # it learns
    assert [c["step"] for c in a["train"]["checks"]] == [20, 40]  # dev checks ran
    assert json.loads((tmp_path / "a" / REPORT).read_text())["probe"]["n"] == 8


def test_cli_rejects_missing_out(capsys):
    with pytest.raises(SystemExit):
        main([])
    assert "--out" in capsys.readouterr().err


def test_base_model_path_falls_back_to_the_cache(tmp_path, monkeypatch):
    import malt.embedded as embedded

    monkeypatch.setattr(embedded, "ASSETS", tmp_path / "not-shipped")
    monkeypatch.setenv("MALT_CACHE", str(tmp_path / "cache"))
    path = embedded.base_model_path(build_if_missing=False)
    assert path == tmp_path / "cache" / "embedded-base"
    assert not embedded.is_complete(path)  # nothing was built
