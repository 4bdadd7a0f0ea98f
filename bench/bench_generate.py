"""Generation benchmark: the level-by-level tree sampler vs one-node-at-a-time vs raw decode.

Builds a random-init tiny Llama locally (no downloads), then reports in one JSON file:
  - sampler: generated tokens/s of `sample_trees` with the hf backend for Q questions at n = 3;
  - naive: the same kind of work done one node at a time (one `generate` call per node, batch 1,
    as simple MALT implementations do), on the first few trees -> speedup ratio (target >= 10x);
  - ceiling: raw batched `generate` throughput at the sampler's batch size on prompts of the
    sampler's mean prompt length, every row decoding max_new_tokens, with transformers' own
    caches -> sampler share (>= 70%); the same decode with malt's shared prompt cache is
    reported beside it (`share_of_shared_cache_decode`).
Each is measured `--repeats` times, interleaved; the best of each is compared (the run least
disturbed by a shared machine's neighbours) and every round is in the JSON.

    python bench/bench_generate.py [--questions 16] [--batch-size 192] [--kv-cache shared] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from malt.backends.base import ModelSpec, SamplingParams, derive_seed  # noqa: E402
from malt.backends.hf import HFBackend, encode_chat  # noqa: E402
from malt.chain import DEFAULT_NAMES as ROLES  # noqa: E402
from malt.config import BackendConfig  # noqa: E402
from malt.records import Problem  # noqa: E402
from malt.sampling import sample_trees  # noqa: E402
from malt.tasks.base import RolePrompts, Task  # noqa: E402

TASK = Task(
    name="bench",
    parse_row=lambda row, where: Problem(**row),
    extract_fn=lambda text: text.strip().split()[-1] if text.strip() else None,
    equivalent_fn=lambda a, b: a == b,
    prompts=RolePrompts(
        generator_system="Solve the problem step by step. End with 'Final Answer: <number>'.",
        verifier_system="Check the initial answer step by step and point out any mistake.",
        refiner_system=(
            "Use the critique to write a corrected solution. End with 'Final Answer: <number>'."
        ),
    ),
)


def problems(k: int) -> list[Problem]:
    """GSM8K-sized synthetic word problems (about 200 characters each)."""
    out = []
    for i in range(k):
        q = (
            f"A shop sells {i + 3} boxes of pencils on Monday and {2 * i + 5} boxes on Tuesday. "
            f"Each box holds {i % 7 + 6} pencils and costs ${i % 5 + 2}. How many pencils did the "
            f"shop sell, and how much money did it take in over the two days?"
        )
        out.append(Problem(id=f"bench-{i}", question=q, answer=str(i), task="bench"))
    return out


class _Profile:
    """Wall time in the shared prefill and in `generate`, and decode slots used vs computed."""

    def __init__(self, backend: HFBackend):
        self.prefill_s = self.generate_s = 0.0
        self.slots = 0  # rows x decode steps actually run (finished rows keep their slot)
        backend._prefill = self._timed(backend._prefill)
        backend._prefill_shared = self._timed(backend._prefill_shared)
        self._backend, self._model = backend, backend.routes["generator"].model
        self._generate, self._model.generate = self._model.generate, self._timed_generate

    def remove(self) -> None:
        """Put the original methods back."""
        del self._backend._prefill, self._backend._prefill_shared, self._model.generate

    def _timed(self, prefill):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            out = prefill(*args, **kwargs)
            self.prefill_s += time.perf_counter() - start
            return out

        return timed

    def _timed_generate(self, *args, **kwargs):
        start = time.perf_counter()
        out = self._generate(*args, **kwargs)
        self.generate_s += time.perf_counter() - start
        self.slots += out.shape[0] * (out.shape[1] - kwargs["input_ids"].shape[1])
        return out


def bench_sampler(backend: HFBackend, qs: list[Problem], sampling: dict) -> dict:
    profile = _Profile(backend)
    start = time.perf_counter()
    trees, stats = sample_trees(TASK, qs, backend, sampling, run_seed=0)
    wall = time.perf_counter() - start
    profile.remove()
    prompt_lens = [
        len(encode_chat(backend.routes[n.role].tokenizer, n.prompt)) for t in trees for n in t.nodes
    ]
    return {
        "questions": len(qs),
        "generations": sum(stats.generations.values()),
        "tokens": stats.total_tokens,
        "wall_s": round(wall, 3),
        "tokens_per_s": round(stats.total_tokens / wall, 1),
        "mean_prompt_tokens": round(sum(prompt_lens) / len(prompt_lens), 1),
        "mean_new_tokens": round(stats.total_tokens / sum(stats.generations.values()), 1),
        "profile": {
            "shared_prefill_s": round(profile.prefill_s, 3),
            "generate_s": round(profile.generate_s, 3),
            "other_s": round(wall - profile.prefill_s - profile.generate_s, 3),
            "decode_slots": profile.slots,
            "decode_slots_per_s": round(profile.slots / profile.generate_s, 1),
            "slot_use": round(stats.total_tokens / profile.slots, 3),
        },
        "_trees": trees,
    }


def bench_naive(model, tok, trees: list, params: SamplingParams) -> dict:
    """One plain `generate` call per node (batch 1, KV cache on), as simple loops do."""
    import torch

    nodes = [n for t in trees for n in t.nodes]
    tokens = 0
    start = time.perf_counter()
    for node in nodes:
        ids = torch.tensor([encode_chat(tok, node.prompt)])
        torch.manual_seed(derive_seed(node.id) % 2**31)
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                temperature=params.temperature,
                top_p=params.top_p,
                max_new_tokens=params.max_new_tokens,
                pad_token_id=tok.pad_token_id,
            )
        new = out[0, ids.shape[1] :].tolist()
        tokens += next((k + 1 for k, t in enumerate(new) if t == tok.eos_token_id), len(new))
    wall = time.perf_counter() - start
    return {
        "generations": len(nodes),
        "tokens": tokens,
        "wall_s": round(wall, 3),
        "tokens_per_s": round(tokens / wall, 1),
    }


def _decode_time(model, tok, ids, new_tokens: int, cache_kind: str) -> float:
    """Seconds to decode `new_tokens` for every row once all but the last prompt token are
    in the KV cache (the prefill runs first, untimed). `shared`: every 3 consecutive rows
    share one prompt, held once in the cache (malt's default for n = 3)."""
    import torch
    from transformers import DynamicCache, StaticCache

    from malt.backends import hf_shared
    from malt.backends.hf import _attention

    shared = cache_kind == "shared"
    if shared:  # 3 rows per prompt, prefilled once
        ids = ids[::3].repeat_interleave(3, 0)[: ids.shape[0]]
    prefill = ids[::3, :-1] if shared else ids[:, :-1]
    if cache_kind == "static":
        cache = StaticCache(config=model.config, max_cache_len=ids.shape[1] + new_tokens)
    else:
        cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(input_ids=prefill, past_key_values=cache, use_cache=True)
        if shared:
            cache = hf_shared.from_prompt_cache(cache, torch.ones_like(prefill), 3, new_tokens + 1)
        start = time.perf_counter()
        with _attention(model, hf_shared.NAME if shared else None):
            model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                past_key_values=cache,
                do_sample=True,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                pad_token_id=tok.pad_token_id,
            )
    return time.perf_counter() - start


def bench_ceiling(model, tok, batch: int, prompt_len: int, new_tokens: int) -> dict:
    """Raw batched decode: `batch` rows with a `prompt_len`-token KV cache, every row decoding
    `new_tokens`, prefill excluded. Measured with transformers' dynamic and static KV caches
    (best of two runs each); the faster one is the ceiling as the issue defines it. Also
    measured, not part of that ceiling: the same decode with malt's shared prompt cache (3
    rows per prompt), the ceiling of the sampler's own decoding."""
    import torch

    ids = torch.randint(10, len(tok) - 1, (batch, prompt_len))
    out: dict = {"batch_size": batch, "prompt_tokens": prompt_len, "new_tokens": new_tokens}
    for kind in ("dynamic", "static", "shared"):
        wall = min(_decode_time(model, tok, ids, new_tokens, kind) for _ in range(2))
        out[kind] = {
            "decode_s": round(wall, 3),
            "tokens_per_s": round(batch * new_tokens / wall, 1),
        }
    out["tokens_per_s"] = max(out[k]["tokens_per_s"] for k in ("dynamic", "static"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--naive-questions", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=192)  # as configs/demo.yaml
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--kv-cache", choices=("shared", "static", "dynamic"), default="shared")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: all cores)"
    )
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds of sampler, naive and ceiling; the best of each is reported")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "generate.json"))
    args = parser.parse_args()

    import torch

    from malt.embedded.tiny import init_model

    if args.threads:
        torch.set_num_threads(args.threads)
    params = SamplingParams(n=3, temperature=0.3, top_p=1.0, max_new_tokens=args.max_new_tokens)
    sampling = dict.fromkeys(ROLES, params)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = init_model(Path(tmp) / "tiny", seed=0)
        backend = HFBackend(
            BackendConfig(device="cpu", batch_size=args.batch_size, kv_cache=args.kv_cache),
            {r: ModelSpec(str(model_dir)) for r in ROLES},
        )
        route = backend.routes["generator"]
        sample_trees(TASK, problems(2), backend, sampling, run_seed=1)  # warm-up
        rounds = []
        for _ in range(args.repeats):  # interleaved, so a noisy minute hits every measure
            sampler = bench_sampler(backend, problems(args.questions), sampling)
            trees = sampler.pop("_trees")
            naive = bench_naive(route.model, route.tokenizer, trees[: args.naive_questions],
                                params)
            ceiling = bench_ceiling(route.model, route.tokenizer, args.batch_size,
                                    round(sampler["mean_prompt_tokens"]), args.max_new_tokens)
            rounds.append((sampler, naive, ceiling))
            print(json.dumps({"sampler_tokens_per_s": sampler["tokens_per_s"],
                              "naive_tokens_per_s": naive["tokens_per_s"],
                              "ceiling_tokens_per_s": ceiling["tokens_per_s"]}), flush=True)
        # Best of the rounds for each measure: the run least disturbed by anything else.
        sampler = max((r[0] for r in rounds), key=lambda r: r["tokens_per_s"])
        naive = max((r[1] for r in rounds), key=lambda r: r["tokens_per_s"])
        ceiling = max((r[2] for r in rounds), key=lambda r: r["tokens_per_s"])
        shared = max(r[2]["shared"]["tokens_per_s"] for r in rounds)
        n_params = sum(p.numel() for p in route.model.parameters())
    result = {
        "benchmark": "generate",
        "model": {"kind": "tiny Llama, random init", "parameters": n_params, "dtype": "float32"},
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "settings": {
            "n": 3,
            "temperature": params.temperature,
            "max_new_tokens": args.max_new_tokens,
            "batch_size": args.batch_size,
            "kv_cache": args.kv_cache,
        },
        "repeats": args.repeats,
        "rounds": [{"sampler_tokens_per_s": s["tokens_per_s"],
                    "naive_tokens_per_s": n["tokens_per_s"],
                    "ceiling_tokens_per_s": c["tokens_per_s"],
                    "shared_cache_decode_tokens_per_s": c["shared"]["tokens_per_s"],
                    "speedup_vs_naive": round(s["tokens_per_s"] / n["tokens_per_s"], 2),
                    "share_of_ceiling": round(s["tokens_per_s"] / c["tokens_per_s"], 3)}
                   for s, n, c in rounds],
        "sampler": sampler,
        "naive_one_node_at_a_time": naive,
        "ceiling_raw_batched_decode": ceiling,
        "speedup_vs_naive": round(sampler["tokens_per_s"] / naive["tokens_per_s"], 2),
        "share_of_ceiling": round(sampler["tokens_per_s"] / ceiling["tokens_per_s"], 3),
        "share_of_shared_cache_decode": round(sampler["tokens_per_s"] / shared, 3),
        "targets": {"speedup_vs_naive": 10.0, "share_of_ceiling": 0.7},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
