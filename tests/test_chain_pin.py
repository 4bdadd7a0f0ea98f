"""The role-chain redesign changed no byte of what the default G -> V -> R chain writes.

The hashes below were written by the code before the redesign (the three hand-coded levels),
on the same inputs: trees sampled through `malt generate` with the deterministic toy backend
and labelled by `malt label`, and a synthetic G -> V -> R forest labelled with global and
local pooling. The chain-driven sampler, credit, role data and label stage must reproduce
every file exactly.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from malt.config import load_config
from malt.io import write_trees
from malt.records import Branching, Problem
from malt.stages import generate, label
from malt.synthetic import synthetic_forest
from toy_task import QUESTIONS, FakeBackend

BEFORE = {
    "a/generate/trees-00000.jsonl":
        "29c68bac6e89ec54cfd750c284aa09d7d787b7152f0b0b1bd2117215d654f471",
    "a/generate/trees-00001.jsonl":
        "2b11a8854baef4f95af39d90013d5968df89106a85e5cc526c07477430e6d12a",
    "a/generate/trees-00002.jsonl":
        "84c2fad62b939b292b49fac5b80d217e35897870db212fc016828ebe82996cdc",
    "a/label/dpo_refiner.jsonl":
        "99c172b7af7cb81f774b3191c7dd89b475af95e759bf27f8b81a40cfa1b3b65d",
    "a/label/dpo_verifier.jsonl":
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "a/label/labels.jsonl":
        "872060a907867e68ddb01b0e0a28c529a90724fda1b7efe6d416f2d0f7e2b95a",
    "a/label/sft_generator.jsonl":
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "a/label/sft_refiner.jsonl":
        "409b6d5163f8480256f706aca5d8fcf33778b7c1072cfc6528d1c228dad4fe50",
    "a/label/sft_verifier.jsonl":
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "b/generate/trees-00000.jsonl":
        "28b2a55c5d937832e143faa5af104bb499f7895b898712bfdd480e8d6b4d9f09",
    "b/label/dpo_refiner.jsonl":
        "bdd8f625cd47ebdfa6804515fd4de157d185886332bdf819a1abf22dd2d59000",
    "b/label/dpo_verifier.jsonl":
        "dee671a6f0670753b575a0bf1062549b0dfa2efab06405a24d787ee8cd815bb0",
    "b/label/global-dpo_refiner.jsonl":
        "bdd8f625cd47ebdfa6804515fd4de157d185886332bdf819a1abf22dd2d59000",
    "b/label/global-dpo_verifier.jsonl":
        "dee671a6f0670753b575a0bf1062549b0dfa2efab06405a24d787ee8cd815bb0",
    "b/label/global-labels.jsonl":
        "673e8f576f82acebf9c65620a648a8546917c52749073d5303c71f089a36263b",
    "b/label/global-sft_generator.jsonl":
        "0aa7c2bd5b14c01a5804a1adace60879e24ed0f1172cf82fbfa2049976b52428",
    "b/label/global-sft_refiner.jsonl":
        "c10c249f6efa1560cf818aba3e70f167b2f452ca59ca218083073827928a4f3e",
    "b/label/global-sft_verifier.jsonl":
        "b33c2617785deb6900689be7bb15b0e764c1c3c09e9a10c7154d85b3cd7b69f3",
    "b/label/labels.jsonl":
        "ca5b1decede381f816c84f5cb4ff70706ea137dbed3b80ccf93557baf86fe2cc",
    "b/label/local-dpo_refiner.jsonl":
        "bdd8f625cd47ebdfa6804515fd4de157d185886332bdf819a1abf22dd2d59000",
    "b/label/local-dpo_verifier.jsonl":
        "dee671a6f0670753b575a0bf1062549b0dfa2efab06405a24d787ee8cd815bb0",
    "b/label/local-labels.jsonl":
        "ca5b1decede381f816c84f5cb4ff70706ea137dbed3b80ccf93557baf86fe2cc",
    "b/label/local-sft_generator.jsonl":
        "e573193a9f2ee8f9ba8c35507c369226e1245ce5447d806814f28d946967ebf0",
    "b/label/local-sft_refiner.jsonl":
        "c10c249f6efa1560cf818aba3e70f167b2f452ca59ca218083073827928a4f3e",
    "b/label/local-sft_verifier.jsonl":
        "b33c2617785deb6900689be7bb15b0e764c1c3c09e9a10c7154d85b3cd7b69f3",
    "b/label/sft_generator.jsonl":
        "e573193a9f2ee8f9ba8c35507c369226e1245ce5447d806814f28d946967ebf0",
    "b/label/sft_refiner.jsonl":
        "c10c249f6efa1560cf818aba3e70f167b2f452ca59ca218083073827928a4f3e",
    "b/label/sft_verifier.jsonl":
        "b33c2617785deb6900689be7bb15b0e764c1c3c09e9a10c7154d85b3cd7b69f3",
}


def test_default_chain_writes_the_bytes_of_the_code_before_the_redesign(gen_task, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # length meters: no tokenizer to look up
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QUESTIONS))
    cfg = load_config(None, [f"run_dir={tmp_path / 'a'}", "seed=5", "task.name=toy",
                             f"task.train={data}", "models.base=unused", "generate.chunk_size=3",
                             "generate.verifier.n=2", "data.max_pairs_per_parent=2"])
    generate.run(cfg, backend=FakeBackend(), progress=False)
    label.run(cfg)
    problems = [Problem(id=f"gsm8k-{i}", question=f"q{i}?", answer=str(i), task="gsm8k")
                for i in range(12)]
    (tmp_path / "b" / "generate").mkdir(parents=True)
    write_trees(tmp_path / "b" / "generate" / "trees-00000.jsonl",
                synthetic_forest(problems, Branching(3, 3, 3), seed=1))
    for pooling in ("global", "local"):
        label.run(load_config(None, [f"run_dir={tmp_path / 'b'}", "task.name=gsm8k",
                                     "models.base=unused", f"credit.pooling={pooling}"]))
        for p in sorted((tmp_path / "b" / "label").glob("*.jsonl")):
            if not p.name.startswith(("global-", "local-")):
                (p.parent / f"{pooling}-{p.name}").write_bytes(p.read_bytes())
    now = {str(p.relative_to(tmp_path)): hashlib.sha256(p.read_bytes()).hexdigest()
           for p in sorted(tmp_path.rglob("*.jsonl")) if p.name != "toy.jsonl"}
    assert now == BEFORE
    assert sum(1 for p in Path(tmp_path).rglob("*.jsonl") if p.stat().st_size) >= 25
