"""The hf backend on a tiny local model: seeded sampling, batch independence, adapters."""

from __future__ import annotations

import pytest
import torch

from malt.backends import ModelSpec, SamplingParams, build_backend
from malt.backends.hf import left_pad, to_completion
from malt.backends.hf_sampling import row_keys, sampling_processors, uniform_noise
from malt.chain import DEFAULT_NAMES as ROLES
from malt.config import BackendConfig
from malt.errors import MaltError

pytestmark = pytest.mark.slow

PROMPTS = [
    [{"role": "user", "content": "What is 2 + 2?"}],
    [
        {"role": "system", "content": "You are a careful checker."},
        {"role": "user", "content": "A much longer question so that this row needs no padding."},
    ],
    [{"role": "user", "content": "x"}],
]
PARAMS = SamplingParams(n=3, temperature=0.8, max_new_tokens=12)


def _backend(model, batch_size=64, adapters=None):
    adapters = adapters or {}
    specs = {r: ModelSpec(str(model), adapters.get(r)) for r in ROLES}
    return build_backend(BackendConfig(name="hf", device="cpu", batch_size=batch_size), specs)


@pytest.fixture(scope="module")
def backend(tiny_model):
    b = _backend(tiny_model)
    yield b
    b.close()


def _texts(out):
    return [[c.text for c in row] for row in out]


def test_samples_are_reproducible_and_independent_of_batch_composition(backend, tiny_model):
    together = backend.generate("generator", PROMPTS, PARAMS, [11, 22, 33])
    alone = backend.generate("generator", PROMPTS[1:2], PARAMS, [22])
    assert _texts(alone) == _texts(together)[1:2]
    one_row_batches = _backend(tiny_model, batch_size=1)
    assert _texts(one_row_batches.generate("generator", PROMPTS, PARAMS, [11, 22, 33])) == _texts(together)
    reordered = backend.generate("generator", PROMPTS[::-1], PARAMS, [33, 22, 11])
    assert _texts(reordered) == _texts(together)[::-1]


def test_every_cache_mode_gives_the_same_samples_as_plain_batches(backend):
    assert backend.kv_cache == "shared"  # the default: one prompt cache for its n samples
    shared = backend.generate("verifier", PROMPTS, PARAMS, [4, 5, 6])
    texts = {}
    try:
        backend.segment_tokens = 3  # drop finished rows (and then whole prompts) often
        texts["shared, segmented"] = _texts(backend.generate("verifier", PROMPTS, PARAMS, [4, 5, 6]))
        for mode in ("static", "dynamic"):
            backend.kv_cache, backend.segment_tokens = mode, 32
            texts[mode] = _texts(backend.generate("verifier", PROMPTS, PARAMS, [4, 5, 6]))
        backend.kv_cache, backend.segment_tokens = "static", 3
        texts["static, segmented"] = _texts(backend.generate("verifier", PROMPTS, PARAMS, [4, 5, 6]))
        backend.share_prefill = False
        texts["plain"] = _texts(backend.generate("verifier", PROMPTS, PARAMS, [4, 5, 6]))
    finally:
        backend.share_prefill, backend.kv_cache, backend.segment_tokens = True, "shared", 32
    assert {mode: t for mode, t in texts.items() if t != _texts(shared)} == {}
    assert len({c for row in texts["plain"] for c in row}) == 9  # nine distinct samples


def test_prompts_sharing_a_question_are_prefilled_once_and_sample_as_alone(backend):
    """A verifier level: one question, three answers (one repeated), another question; the
    shared prefix is prefilled once per group and every prompt samples as it does alone."""
    question = "Tom has 17 apples, gives away 5 and buys twice as many as he has left. " * 2

    def verifier(q: str, answer: str) -> list:
        return [{"role": "system", "content": "Check the answer."},
                {"role": "user", "content": f"Question:\n{q}\nAnswer:\n{answer}"}]

    prompts = [verifier(question, a) for a in ("36", "24 + 12 = 36", "36")]
    prompts.append(verifier("Why is the sky blue? " * 3, "Rayleigh"))
    seeds = [1, 2, 3, 4]
    together = _texts(backend.generate("verifier", prompts, PARAMS, seeds))
    alone = [_texts(backend.generate("verifier", [p], PARAMS, [s]))[0]
             for p, s in zip(prompts, seeds, strict=True)]
    try:
        backend.share_prefill = False
        plain = _texts(backend.generate("verifier", prompts, PARAMS, seeds))
    finally:
        backend.share_prefill = True
    assert together == alone == plain


def test_prefix_groups_share_what_saves_prefill():
    from malt.backends.hf import prefix_groups

    sys_q = list(range(100))
    level = [sys_q + [200 + a] * 30 + [300 + c] * 30 for a in range(3) for c in range(3)]
    other = [list(range(10)) + [999] * 150]  # shares only 10 tokens: not worth a group
    groups = prefix_groups(level + other)
    assert groups == [(100, list(range(9))), (160, [9])]
    assert prefix_groups([[5, 6]]) == [(2, [0])]


def test_the_shared_cache_matches_plain_attention_with_grouped_query_heads(tmp_path):
    """Grouped-query attention (2 key heads for 4 query heads) and a batch whose prompts are
    dropped one by one as their rows finish give the samples of plain attention."""
    from transformers import AutoConfig, LlamaForCausalLM

    from malt.embedded.tiny import build_tokenizer, init_model

    config = AutoConfig.from_pretrained(init_model(tmp_path / "mha", seed=3))
    config.num_key_value_heads = 2
    torch.manual_seed(3)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "gqa")
    build_tokenizer().save_pretrained(tmp_path / "gqa")
    gqa = _backend(tmp_path / "gqa")
    try:
        params = SamplingParams(n=4, temperature=1.2, max_new_tokens=24)
        shared = _texts(gqa.generate("generator", PROMPTS, params, [7, 8, 9]))
        gqa.segment_tokens = 2
        segmented = _texts(gqa.generate("generator", PROMPTS, params, [7, 8, 9]))
        gqa.share_prefill = False
        plain = _texts(gqa.generate("generator", PROMPTS, params, [7, 8, 9]))
    finally:
        gqa.close()
    assert shared == segmented == plain


def test_seeds_and_sample_index_change_the_sample(backend):
    out = backend.generate("generator", PROMPTS[:1] * 2, PARAMS, [1, 2])
    texts = _texts(out)
    assert len(set(texts[0])) == 3  # the n samples of one prompt differ
    assert texts[0] != texts[1]  # the same prompt under another seed differs


def test_greedy_ignores_seeds(backend):
    greedy = SamplingParams(n=2, temperature=0.0, max_new_tokens=6)
    a = backend.generate("verifier", PROMPTS[:1], greedy, [1])
    b = backend.generate("verifier", PROMPTS[:1], greedy, [2])
    assert _texts(a) == _texts(b) and a[0][0].text == a[0][1].text


def test_token_counts_and_finish_reasons(backend):
    params = SamplingParams(n=8, temperature=1.5, max_new_tokens=10)
    out = backend.generate("refiner", PROMPTS, params, [5, 6, 7])
    comps = [c for row in out for c in row]
    assert len(out) == 3 and all(len(row) == 8 for row in out)
    for c in comps:
        assert c.finish_reason in ("stop", "length")
        assert 1 <= c.num_tokens <= 10
        assert c.finish_reason == "stop" or c.num_tokens == 10
        assert "<|end|>" not in c.text and "<|pad|>" not in c.text
    assert {c.finish_reason for c in comps} == {"stop", "length"}  # random weights: some stop


def test_per_role_lora_adapters_share_one_base(tiny_model, tmp_path, backend):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    lora = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")
    with_adapter = _backend(tiny_model, adapters={"generator": str(tmp_path / "adapter")})
    routes = with_adapter.routes
    assert routes["generator"].model is routes["verifier"].model  # base loaded once
    g = with_adapter.generate("generator", PROMPTS, PARAMS, [1, 2, 3])
    v = with_adapter.generate("verifier", PROMPTS, PARAMS, [1, 2, 3])
    plain = backend.generate("generator", PROMPTS, PARAMS, [1, 2, 3])
    assert _texts(v) == _texts(plain)  # no adapter for V: the base model's samples
    assert _texts(g) != _texts(plain)  # G runs its adapter


def test_a_missing_model_folder_is_a_malt_error(tmp_path):
    with pytest.raises(MaltError, match="could not load"):
        _backend(tmp_path / "nope")


def test_left_pad_and_completion_cutting(backend):
    ids, mask = left_pad([[4, 5, 6], [7]], pad_id=1)
    assert ids.tolist() == [[4, 5, 6], [1, 1, 7]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    tok = backend.routes["generator"].tokenizer
    eos = tok.eos_token_id
    hello = tok("hi", add_special_tokens=False)["input_ids"]
    stop = to_completion(tok, hello + [eos, 1, 1], [eos])
    assert (stop.text, stop.num_tokens, stop.finish_reason) == ("hi", len(hello) + 1, "stop")
    cut = to_completion(tok, hello, [eos])
    assert (cut.text, cut.num_tokens, cut.finish_reason) == ("hi", len(hello), "length")


def test_gumbel_noise_samples_the_softmax():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    rows = 20000
    procs = sampling_processors(list(range(rows)), prompt_len=4, temperature=1.0, top_p=1.0, device="cpu")
    scores = torch.log(probs).repeat(rows, 1)
    for proc in procs:
        scores = proc(torch.zeros((rows, 7), dtype=torch.long), scores)
    freq = torch.bincount(scores.argmax(-1), minlength=4) / rows
    assert torch.allclose(freq, probs, atol=0.015)


def test_top_p_removes_the_tail():
    procs = sampling_processors(list(range(2000)), 0, temperature=1.0, top_p=0.7, device="cpu")
    scores = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05])).repeat(2000, 1)
    for proc in procs:
        scores = proc(torch.zeros((2000, 1), dtype=torch.long), scores)
    assert set(scores.argmax(-1).tolist()) == {0, 1}


def test_noise_differs_across_rows_steps_and_tokens():
    keys = row_keys([1, 2])
    a, b = uniform_noise(keys, 0, 50), uniform_noise(keys, 1, 50)
    assert not torch.equal(a[0], a[1]) and not torch.equal(a, b)
    assert len(set(a[0].tolist())) == 50
    assert torch.equal(a, uniform_noise(row_keys([1, 2]), 0, 50))
