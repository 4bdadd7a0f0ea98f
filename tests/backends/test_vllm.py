"""The vllm backend: a real run where vllm and a GPU exist, API wiring checked everywhere."""

from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import dataclass, field

import pytest

from malt.backends import ModelSpec, SamplingParams, build_backend
from malt.config import BackendConfig
from malt.errors import MaltError
from malt.records import ROLES

HAVE_VLLM = importlib.util.find_spec("vllm") is not None


def _has_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(HAVE_VLLM, reason="vllm is installed here")
def test_without_vllm_the_backend_is_a_clear_error():
    with pytest.raises(MaltError, match="vllm is not installed"):
        build_backend(BackendConfig(name="vllm"), {r: ModelSpec("m") for r in ROLES})


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not (HAVE_VLLM and _has_gpu()), reason="needs vllm and a CUDA GPU")
def test_vllm_generates_seeded_samples_on_the_tiny_model(tiny_model):
    cfg = BackendConfig(name="vllm", dtype="float32", gpu_memory_utilization=0.3)
    backend = build_backend(cfg, {r: ModelSpec(str(tiny_model)) for r in ROLES})
    prompts = [[{"role": "user", "content": "What is 2 + 2?"}], [{"role": "user", "content": "Hi"}]]
    params = SamplingParams(n=3, temperature=0.8, max_new_tokens=12)
    try:
        a = backend.generate("generator", prompts, params, [1, 2])
        b = backend.generate("generator", prompts[:1], params, [1])
    finally:
        backend.close()
    assert [len(x) for x in a] == [3, 3]
    assert [c.text for c in a[0]] == [c.text for c in b[0]]  # same seed, other batch
    assert all(1 <= c.num_tokens <= 12 for row in a for c in row)


# --- API wiring, with a stand-in `vllm` module that records what the backend asks for ---


@dataclass
class _Out:
    text: str
    token_ids: list
    finish_reason: str


@dataclass
class _Request:
    outputs: list = field(default_factory=list)


class _FakeTokenizer:
    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        return "|".join(m["content"] for m in messages) + "|A:"

    def __call__(self, text, add_special_tokens):
        assert add_special_tokens is False
        return {"input_ids": [ord(c) for c in text]}


class _FakeLLM:
    made: list = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls = []
        _FakeLLM.made.append(self)

    def get_tokenizer(self):
        return _FakeTokenizer()

    def generate(self, inputs, sampling, lora_request=None, use_tqdm=True):
        self.calls.append((inputs, sampling, lora_request))
        return [
            _Request(
                [
                    _Out(f"s{p['seed']}-{j}", [1] * (j + 1), "length" if j else "stop")
                    for j in range(p["n"])
                ]
            )
            for p in sampling
        ]


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = _FakeLLM
    module.SamplingParams = lambda **kw: kw
    lora = types.ModuleType("vllm.lora.request")
    lora.LoRARequest = lambda name, idx, path: (name, idx, path)
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.lora", types.ModuleType("vllm.lora"))
    monkeypatch.setitem(sys.modules, "vllm.lora.request", lora)
    _FakeLLM.made = []
    return _FakeLLM


def test_one_engine_with_prefix_caching_and_a_lora_per_role(fake_vllm):
    specs = {
        "generator": ModelSpec("base", "ad/g"),
        "verifier": ModelSpec("base", "ad/v"),
        "refiner": ModelSpec("base"),
    }
    cfg = BackendConfig(name="vllm", tensor_parallel_size=2, max_lora_rank=32)
    backend = build_backend(cfg, specs, trust_remote_code=False, revision="abc")
    (engine,) = fake_vllm.made
    assert engine.kwargs["enable_prefix_caching"] is True and engine.kwargs["enable_lora"] is True
    assert engine.kwargs["max_loras"] == 2 and engine.kwargs["max_lora_rank"] == 32
    assert engine.kwargs["tensor_parallel_size"] == 2 and engine.kwargs["revision"] == "abc"
    prompts = [[{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]]
    out = backend.generate("verifier", prompts, SamplingParams(n=2, max_new_tokens=7), [5])
    inputs, sampling, lora = engine.calls[-1]
    assert inputs == [{"prompt_token_ids": [ord(c) for c in "S|Q|A:"]}]
    assert sampling[0]["n"] == 2 and sampling[0]["max_tokens"] == 7
    assert lora[0] == "verifier" and lora[2] == "ad/v"
    assert [(c.num_tokens, c.finish_reason) for c in out[0]] == [(1, "stop"), (2, "length")]
    backend.generate("refiner", prompts, SamplingParams(n=1), [5])
    assert engine.calls[-1][2] is None  # no adapter: the base model


def test_seeds_are_per_prompt_and_stable(fake_vllm):
    backend = build_backend(BackendConfig(name="vllm"), {r: ModelSpec("m") for r in ROLES})
    prompts = [[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]]
    first = backend.generate("generator", prompts, SamplingParams(n=1), [1, 2])
    again = backend.generate("generator", prompts[1:], SamplingParams(n=1), [2])
    assert first[1] == again[0] and first[0] != first[1]


def test_distinct_base_models_split_gpu_memory(fake_vllm):
    specs = {"generator": ModelSpec("a"), "verifier": ModelSpec("b"), "refiner": ModelSpec("a")}
    build_backend(BackendConfig(name="vllm", gpu_memory_utilization=0.8), specs)
    assert sorted(e.kwargs["gpu_memory_utilization"] for e in fake_vllm.made) == [0.4, 0.4]
    assert all("enable_lora" not in e.kwargs for e in fake_vllm.made)
