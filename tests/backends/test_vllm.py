"""The vllm backend: a real run where vllm and a GPU exist; everywhere else a stand-in `vllm`
module that enforces the rules of vLLM's engine malt must live by (read against vLLM's V1
source: greedy sampling refuses n > 1, max_lora_rank is one of a fixed set, an adapter above
it fails to load, the prefix cache is keyed by LoRA name, an engine holds its GPU memory
until its core is shut down)."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from malt.backends import ModelSpec, SamplingParams, build_backend, derive_seed
from malt.chain import DEFAULT_NAMES as ROLES
from malt.config import BackendConfig
from malt.errors import MaltError

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
    cfg = BackendConfig(name="vllm", dtype="float32", gpu_memory_utilization=0.3,
                        max_model_len=512, enforce_eager=True)
    specs = {r: ModelSpec(str(tiny_model)) for r in ROLES}
    backend = build_backend(cfg, specs)
    prompts = [[{"role": "user", "content": "What is 2 + 2?"}], [{"role": "user", "content": "Hi"}]]
    params = SamplingParams(n=3, temperature=0.8, max_new_tokens=12)
    try:
        a = backend.generate("generator", prompts, params, [1, 2])
        b = backend.generate("generator", prompts[:1], params, [1])
        greedy = backend.generate("generator", prompts[:1], SamplingParams(n=3, temperature=0), [1])
    finally:
        backend.close()
    assert [len(x) for x in a] == [3, 3]
    assert [c.text for c in a[0]] == [c.text for c in b[0]]  # same seed, other batch
    assert all(1 <= c.num_tokens <= 12 for row in a for c in row)
    assert len({c.text for c in greedy[0]}) == 1 and len(greedy[0]) == 3
    # The first engine was shut down: a second one starts in the same process.
    again = build_backend(cfg, specs)
    try:
        assert [c.text for c in again.generate("generator", prompts[:1], params, [1])[0]] == [
            c.text for c in b[0]]
    finally:
        again.close()


# --- The stand-in `vllm` module --------------------------------------------------------------

_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vllm.config.lora.MaxLoRARanks
_EPS = 1e-5  # vllm.sampling_params._SAMPLING_EPS


class _SamplingParams:
    """vllm.SamplingParams: its checks that malt's settings can reach."""

    def __init__(self, n=1, temperature=1.0, top_p=1.0, max_tokens=16, seed=None):
        if not 0 <= temperature <= 2:
            raise ValueError(f"temperature must be in [0, 2], got {temperature}.")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}.")
        if temperature < _EPS and n > 1:
            raise ValueError(f"n must be 1 when using greedy sampling, got {n}.")
        self.n, self.temperature, self.top_p, self.max_tokens, self.seed = (
            n, temperature, top_p, max_tokens, seed)


class _LoRARequest:
    def __init__(self, lora_name, lora_int_id, lora_path=""):
        if lora_int_id < 1:
            raise ValueError(f"lora_int_id must be > 0, got {lora_int_id}")
        self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path


@dataclass
class _Out:
    text: str
    token_ids: list
    finish_reason: str | None


@dataclass
class _RequestOutput:
    prompt_token_ids: list
    outputs: list = field(default_factory=list)


class _Tokenizer:
    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        return "|".join(m["content"] for m in messages) + "|A:"

    def __call__(self, text, add_special_tokens):
        assert add_special_tokens is False
        return {"input_ids": [ord(c) for c in text]}


def _content(path) -> tuple:
    root = Path(path)
    return tuple((p.relative_to(root).as_posix(), p.read_bytes())
                 for p in sorted(root.rglob("*")) if p.is_file())


class _EngineCore:
    """The V1 engine core: a child process holding the GPU memory until shut down."""

    def __init__(self, llm):
        self.llm, self.alive, self.shutdowns = llm, True, 0

    def shutdown(self):
        self.shutdowns += 1
        if self.alive:
            self.alive = False
            _LLM.memory_in_use -= self.llm.memory


class _LLMEngine:
    def __init__(self, llm, max_model_len):
        self.llm = llm
        self.model_config = types.SimpleNamespace(max_model_len=max_model_len)
        self.engine_core = _EngineCore(llm)

    def add_lora(self, request):
        self.llm.load(request)
        return True


class _LLM:
    """vllm.LLM: engine arguments recorded, vLLM's rules enforced."""

    made: list = []
    memory_in_use = 0.0
    lora_content: dict = {}  # LoRA name -> adapter content, over the whole process
    finish_reasons = ("stop",)

    def __init__(self, **kwargs):
        memory = kwargs["gpu_memory_utilization"]
        if _LLM.memory_in_use + memory > 1 + 1e-9:
            raise ValueError(f"Free memory on device cuda:0 is less than desired GPU memory "
                             f"utilization ({memory}).")
        if kwargs.get("enable_lora") and kwargs.get("max_lora_rank") not in _RANKS:
            raise ValueError(f"max_lora_rank: input should be {_RANKS}")
        _LLM.memory_in_use += memory
        self.kwargs, self.memory, self.calls, self.loaded = kwargs, memory, [], {}
        self.llm_engine = _LLMEngine(self, kwargs.get("max_model_len") or 4096)
        _LLM.made.append(self)

    def get_tokenizer(self):
        return _Tokenizer()

    def load(self, request):
        """vLLM's checks when an adapter is loaded (WorkerLoRAManager, prefix cache keys)."""
        assert self.kwargs.get("enable_lora"), "LoRA request on an engine without enable_lora"
        rank = json.loads((Path(request.lora_path) / "adapter_config.json").read_text())["r"]
        if rank > self.kwargs["max_lora_rank"]:
            raise ValueError(f"LoRA rank {rank} is greater than max_lora_rank "
                             f"{self.kwargs['max_lora_rank']}.")
        content = _content(request.lora_path)
        if _LLM.lora_content.setdefault(request.lora_name, content) != content:
            raise ValueError(f"LoRA name {request.lora_name!r} collides: it names two adapters")
        held = self.loaded.setdefault(request.lora_int_id, request)
        if held.lora_name != request.lora_name:
            raise ValueError(f"LoRA id {request.lora_int_id} is taken by {held.lora_name!r}")

    def generate(self, inputs, sampling, lora_request=None, use_tqdm=True):
        assert self.llm_engine.engine_core.alive, "generate on a shut-down engine"
        assert len(inputs) == len(sampling)
        if lora_request is not None:
            self.load(lora_request)
        limit = self.llm_engine.model_config.max_model_len
        for x in inputs:
            if len(x["prompt_token_ids"]) > limit:
                raise ValueError(f"The decoder prompt (length {len(x['prompt_token_ids'])}) is "
                                 f"longer than the maximum model length of {limit}.")
        self.calls.append((inputs, sampling, lora_request))
        reasons = _LLM.finish_reasons
        outputs = []
        for i, p in enumerate(sampling):
            # V1 parallel sampling: child j of a seeded request is seeded seed + j.
            texts = ["greedy" if p.temperature < _EPS else f"s{(p.seed or 0) + j}"
                     for j in range(p.n)]
            outputs.append(_RequestOutput(inputs[i]["prompt_token_ids"], [
                _Out(t, [1] * (j + 1), reasons[(i + j) % len(reasons)])
                for j, t in enumerate(texts)]))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = _LLM
    module.SamplingParams = _SamplingParams
    lora = types.ModuleType("vllm.lora.request")
    lora.LoRARequest = _LoRARequest
    parallel_state = types.ModuleType("vllm.distributed.parallel_state")
    parallel_state.cleanups = []
    parallel_state.cleanup_dist_env_and_memory = lambda: parallel_state.cleanups.append(1)
    for name, mod in [("vllm", module), ("vllm.lora", types.ModuleType("vllm.lora")),
                      ("vllm.lora.request", lora),
                      ("vllm.distributed", types.ModuleType("vllm.distributed")),
                      ("vllm.distributed.parallel_state", parallel_state)]:
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(_LLM, "made", [])
    monkeypatch.setattr(_LLM, "memory_in_use", 0.0)
    monkeypatch.setattr(_LLM, "lora_content", {})
    monkeypatch.setattr(_LLM, "finish_reasons", ("stop",))
    monkeypatch.setattr(_LLM, "cleanups", parallel_state.cleanups, raising=False)
    return _LLM


def _adapter(root: Path, name: str, r: int = 16, weights: bytes = b"w", **extra) -> str:
    path = root / name
    path.mkdir(parents=True)
    config = {"r": r, "lora_alpha": 32, "target_modules": ["q_proj"], **extra}
    (path / "adapter_config.json").write_text(json.dumps(config))
    (path / "adapter_model.safetensors").write_bytes(weights)
    return str(path)


PROMPT = [[{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]]


def test_the_stand_in_refuses_what_vllm_refuses(fake_vllm, tmp_path):
    with pytest.raises(ValueError, match="n must be 1 when using greedy sampling"):
        _SamplingParams(n=3, temperature=0)
    with pytest.raises(ValueError, match="max_lora_rank"):
        _LLM(gpu_memory_utilization=0.1, enable_lora=True, max_lora_rank=24)
    engine = _LLM(gpu_memory_utilization=0.1, enable_lora=True, max_lora_rank=16)
    with pytest.raises(ValueError, match="LoRA rank 32 is greater than max_lora_rank 16"):
        engine.load(_LoRARequest("a", 1, _adapter(tmp_path, "a", r=32)))
    engine.load(_LoRARequest("same", 2, _adapter(tmp_path, "b", weights=b"one")))
    with pytest.raises(ValueError, match="collides"):
        engine.load(_LoRARequest("same", 3, _adapter(tmp_path, "c", weights=b"two")))
    with pytest.raises(ValueError, match="Free memory"):
        _LLM(gpu_memory_utilization=0.95)


def test_one_engine_with_prefix_caching_and_a_content_named_lora_per_role(fake_vllm, tmp_path):
    g, v = _adapter(tmp_path, "g", weights=b"g"), _adapter(tmp_path, "v", weights=b"v")
    specs = {"generator": ModelSpec("base", g), "verifier": ModelSpec("base", v),
             "refiner": ModelSpec("base")}
    cfg = BackendConfig(name="vllm", tensor_parallel_size=2)
    backend = build_backend(cfg, specs, trust_remote_code=False, revision="abc")
    (engine,) = fake_vllm.made
    kw = engine.kwargs
    assert kw["enable_prefix_caching"] is True and kw["enable_lora"] is True
    assert kw["max_loras"] == 2 and kw["max_lora_rank"] == 16  # from the adapters' r
    assert kw["tensor_parallel_size"] == 2 and kw["revision"] == "abc"
    # Both adapters were loaded at start-up, under names that are their content's hash.
    names = {r.lora_path: r.lora_name for r in engine.loaded.values()}
    assert set(names) == {g, v} and len(set(names.values())) == 2
    assert all(n.startswith("malt-") and len(n) == 21 for n in names.values())
    out = backend.generate("verifier", PROMPT, SamplingParams(n=2, max_new_tokens=7), [5])
    inputs, sampling, lora = engine.calls[-1]
    assert inputs == [{"prompt_token_ids": [ord(c) for c in "S|Q|A:"]}] * 2
    assert [p.max_tokens for p in sampling] == [7, 7]
    assert lora.lora_path == v and lora.lora_name == names[v]
    assert [(c.num_tokens, c.finish_reason) for c in out[0]] == [(1, "stop"), (1, "stop")]
    backend.generate("refiner", PROMPT, SamplingParams(n=1), [5])
    assert engine.calls[-1][2] is None  # no adapter: the base model
    backend.close()


def test_two_adapters_for_one_role_never_share_a_lora_name(fake_vllm, tmp_path):
    # malt eval runs the SFT adapters, then the final ones, in one process: same role, other
    # adapters. Names follow content, so they differ; the stand-in would refuse a collision.
    sft = _adapter(tmp_path, "verifier/sft", weights=b"sft")
    final = _adapter(tmp_path, "verifier/final", weights=b"final")
    copy = _adapter(tmp_path, "copy-of-final", weights=b"final")
    names = []
    for path in (sft, final, copy):
        backend = build_backend(BackendConfig(name="vllm"), {"verifier": ModelSpec("base", path)})
        backend.generate("verifier", PROMPT, SamplingParams(n=1), [0])
        names.append(fake_vllm.made[-1].calls[-1][2].lora_name)
        backend.close()
    assert names[0] != names[1] and names[1] == names[2]  # equal content, equal name


def test_roles_sharing_an_adapter_share_one_lora(fake_vllm, tmp_path):
    shared = _adapter(tmp_path, "shared")
    backend = build_backend(BackendConfig(name="vllm"),
                            {r: ModelSpec("base", shared) for r in ROLES})
    (engine,) = fake_vllm.made
    assert engine.kwargs["max_loras"] == 1 and len(engine.loaded) == 1
    backend.close()


@pytest.mark.parametrize(("ranks", "expected"), [
    ((1,), 1), ((8,), 8), ((12,), 16), ((16, 8), 16), ((24,), 32), ((300,), 320), ((512,), 512),
])
def test_max_lora_rank_is_the_smallest_vllm_rank_that_fits_the_adapters(fake_vllm, tmp_path,
                                                                         ranks, expected):
    specs = {role: ModelSpec("base", _adapter(tmp_path, role, r=r, weights=role.encode()))
             for role, r in zip(ROLES, ranks, strict=False)}
    build_backend(BackendConfig(name="vllm"), specs).close()
    assert fake_vllm.made[-1].kwargs["max_lora_rank"] == expected


def test_a_rank_pattern_counts_toward_the_adapter_rank(fake_vllm, tmp_path):
    path = _adapter(tmp_path, "g", r=16, rank_pattern={"q_proj": 64})
    build_backend(BackendConfig(name="vllm"), {"generator": ModelSpec("base", path)}).close()
    assert fake_vllm.made[-1].kwargs["max_lora_rank"] == 64


def test_an_adapter_above_max_lora_rank_is_one_sentence_before_vllm_starts(fake_vllm, tmp_path):
    path = _adapter(tmp_path, "g", r=32)
    cfg = BackendConfig(name="vllm", max_lora_rank=16)
    with pytest.raises(MaltError) as err:
        build_backend(cfg, {"generator": ModelSpec("base", path)})
    assert str(err.value) == (f"{path}: LoRA rank 32 (adapter_config.json) is above "
                              "backend.max_lora_rank 16; raise it or leave it empty")
    assert fake_vllm.made == []
    build_backend(BackendConfig(name="vllm", max_lora_rank=64),
                  {"generator": ModelSpec("base", path)}).close()
    assert fake_vllm.made[-1].kwargs["max_lora_rank"] == 64  # a set rank is used as set


def test_ranks_vllm_cannot_serve_and_unreadable_adapters_are_one_sentence(fake_vllm, tmp_path):
    big = _adapter(tmp_path, "big", r=1024)
    with pytest.raises(MaltError, match=r"LoRA rank 1024 is above 512, the largest rank vLLM"):
        build_backend(BackendConfig(name="vllm"), {"generator": ModelSpec("base", big)})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MaltError, match=r"not a PEFT adapter folder \(no adapter_config.json\)"):
        build_backend(BackendConfig(name="vllm"), {"generator": ModelSpec("base", str(empty))})
    bad = _adapter(tmp_path, "bad", r="sixteen")
    with pytest.raises(MaltError, match=r"adapter_config.json: unreadable LoRA rank"):
        build_backend(BackendConfig(name="vllm"), {"generator": ModelSpec("base", bad)})


def test_greedy_with_several_samples_is_one_request_repeated(fake_vllm):
    backend = build_backend(BackendConfig(name="vllm"), {r: ModelSpec("m") for r in ROLES})
    prompts = PROMPT * 2
    out = backend.generate("generator", prompts, SamplingParams(n=3, temperature=0), [1, 2])
    _, sampling, _ = fake_vllm.made[0].calls[-1]
    assert [(p.n, p.temperature, p.seed) for p in sampling] == [(1, 0, None)] * 2
    assert [[c.text for c in row] for row in out] == [["greedy"] * 3] * 2


def test_each_sample_is_its_own_request_seeded_per_node(fake_vllm):
    backend = build_backend(BackendConfig(name="vllm"), {r: ModelSpec("m") for r in ROLES})
    prompts = [[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]]
    first = backend.generate("generator", prompts, SamplingParams(n=3), [1, 2])
    _, sampling, _ = fake_vllm.made[0].calls[-1]
    assert [p.n for p in sampling] == [1] * 6  # never vLLM's n > 1, whose child j gets seed + j
    expected = [derive_seed(s, j) % 2**31 for s in (1, 2) for j in range(3)]
    assert [p.seed for p in sampling] == expected
    again = backend.generate("generator", prompts[1:], SamplingParams(n=3), [2])
    assert first[1] == again[0] and first[0] != first[1]  # a prompt's samples ignore the batch


def test_engine_settings_pass_through(fake_vllm):
    cfg = BackendConfig(name="vllm", gpu_memory_utilization=0.7, max_model_len=4096,
                        max_num_seqs=128, enforce_eager=True, quantization="fp8", dtype="auto")
    build_backend(cfg, {r: ModelSpec("m") for r in ROLES}).close()
    kw = fake_vllm.made[0].kwargs
    assert (kw["gpu_memory_utilization"], kw["max_model_len"], kw["max_num_seqs"]) == (0.7, 4096, 128)
    assert kw["enforce_eager"] is True and kw["quantization"] == "fp8"
    assert kw["dtype"] == "bfloat16"  # ours, not vLLM's auto (the checkpoint's dtype)


def test_unset_engine_settings_are_left_to_vllm(fake_vllm):
    build_backend(BackendConfig(name="vllm"), {r: ModelSpec("m") for r in ROLES}).close()
    kw = fake_vllm.made[0].kwargs
    assert not {"max_model_len", "max_num_seqs", "quantization", "enable_lora"} & set(kw)
    assert kw["enforce_eager"] is False


@pytest.mark.parametrize(("ours", "theirs"), [
    ("auto", "bfloat16"), ("bfloat16", "bfloat16"), ("float16", "float16"), ("half", "float16"),
    ("float32", "float32"),
])
def test_dtype_is_mapped_explicitly(fake_vllm, ours, theirs):
    build_backend(BackendConfig(name="vllm", dtype=ours), {"generator": ModelSpec("m")}).close()
    assert fake_vllm.made[-1].kwargs["dtype"] == theirs


def test_a_dtype_vllm_does_not_take_is_one_sentence(fake_vllm):
    with pytest.raises(MaltError) as err:
        build_backend(BackendConfig(name="vllm", dtype="int8"), {"generator": ModelSpec("m")})
    assert str(err.value) == "backend.dtype: vLLM takes auto, bfloat16, float16 or float32, not 'int8'"


def test_a_prompt_without_room_in_the_context_is_one_sentence(fake_vllm):
    backend = build_backend(BackendConfig(name="vllm", max_model_len=6), {"refiner": ModelSpec("m")})
    with pytest.raises(MaltError) as err:  # "S|Q|A:" is 6 tokens: nothing left to generate
        backend.generate("refiner", PROMPT, SamplingParams(n=1), [0])
    assert str(err.value) == (
        "backend.max_model_len: refiner prompt 0 of this call is 6 tokens, which leaves no room "
        "to generate in the 6-token context window; raise backend.max_model_len (up to the "
        "model's limit) or shorten the inputs")
    assert fake_vllm.made[0].calls == []  # refused before vLLM was asked


def test_an_input_vllm_refuses_is_one_sentence(fake_vllm, monkeypatch):
    backend = build_backend(BackendConfig(name="vllm"), {"generator": ModelSpec("m")})
    # With the engine's limit unknown to malt, vLLM's own check speaks; malt rephrases it.
    monkeypatch.setattr(backend, "context", {"m": None})
    monkeypatch.setattr(fake_vllm.made[0].llm_engine.model_config, "max_model_len", 4)
    with pytest.raises(MaltError) as err:
        backend.generate("generator", PROMPT, SamplingParams(n=1), [0])
    assert str(err.value) == ("vLLM refused a generator request (The decoder prompt (length 6) "
                              "is longer than the maximum model length of 4.)")


def test_sampling_settings_vllm_refuses_are_one_sentence(fake_vllm):
    backend = build_backend(BackendConfig(name="vllm"), {"generator": ModelSpec("m")})
    with pytest.raises(MaltError, match=r"^vLLM refused the sampling settings \(temperature must"):
        backend.generate("generator", PROMPT, SamplingParams(n=1, temperature=2.5), [0])


def test_finish_reasons_are_vllm_s_own(fake_vllm, monkeypatch):
    monkeypatch.setattr(_LLM, "finish_reasons", ("stop", "length", "abort", "error"))
    backend = build_backend(BackendConfig(name="vllm"), {"generator": ModelSpec("m")})
    out = backend.generate("generator", PROMPT * 4, SamplingParams(n=1), [0, 1, 2, 3])
    assert [row[0].finish_reason for row in out] == ["stop", "length", "abort", "error"]


def test_close_shuts_the_engine_down_so_the_next_one_can_start(fake_vllm):
    cfg = BackendConfig(name="vllm", gpu_memory_utilization=0.85)
    first = build_backend(cfg, {r: ModelSpec("base") for r in ROLES})
    with pytest.raises(MaltError, match=r"^other: vLLM could not start an engine .*Free memory"):
        build_backend(cfg, {r: ModelSpec("other") for r in ROLES})  # the first still holds it
    cleanups = len(fake_vllm.cleanups)
    first.close()
    core = fake_vllm.made[0].llm_engine.engine_core
    assert core.alive is False and core.shutdowns == 1 and len(fake_vllm.cleanups) > cleanups
    first.close()  # twice is harmless
    second = build_backend(cfg, {r: ModelSpec("other") for r in ROLES})
    assert second.generate("generator", PROMPT, SamplingParams(n=1), [0])[0][0].text
    second.close()
    assert fake_vllm.memory_in_use == pytest.approx(0)


def test_a_failed_start_shuts_down_the_engines_already_started(fake_vllm, tmp_path):
    bad = _adapter(tmp_path, "bad", r=32)
    specs = {"generator": ModelSpec("a"), "verifier": ModelSpec("b", bad)}
    with pytest.raises(MaltError, match="LoRA rank 32"):
        build_backend(BackendConfig(name="vllm", max_lora_rank=16), specs)
    assert [e.llm_engine.engine_core.alive for e in fake_vllm.made] == [False]
    assert fake_vllm.memory_in_use == pytest.approx(0)


def test_distinct_base_models_split_gpu_memory(fake_vllm):
    specs = {"generator": ModelSpec("a"), "verifier": ModelSpec("b"), "refiner": ModelSpec("a")}
    build_backend(BackendConfig(name="vllm", gpu_memory_utilization=0.8), specs).close()
    assert sorted(e.kwargs["gpu_memory_utilization"] for e in fake_vllm.made) == [0.4, 0.4]
    assert all("enable_lora" not in e.kwargs for e in fake_vllm.made)
