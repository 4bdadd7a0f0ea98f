"""The GPU path, measured: hf generation and LoRA SFT + DPO in bf16 on one CUDA device.

    python bench/gpu_check.py [--out bench/results/gpu_check.json]

(a) Generation through malt's hf backend in bf16 on the embedded base
(`src/malt/embedded/assets/base`, ~0.9M parameters) and on a randomly initialised ~100M
parameter Llama built here (transformers LlamaConfig, the embedded character tokenizer; no
downloads), prompts from the embedded `arith` corpus for all three roles.
(b) Training through malt.train (`run_sft`, then `run_dpo` from the SFT adapter, the same
functions `malt train` calls) on the synthetic role rows of `malt.train.synthetic`, bf16,
SDPA attention (SFT: malt's per-sequence SDPA for padding-free batches; DPO: transformers'
SDPA), on the ~100M model.

For each part: tokens per second and peak GPU memory (`torch.cuda.max_memory_allocated`),
written as JSON to bench/results/gpu_check.json. About a minute on one H200. Without a CUDA
device it prints "no CUDA device: nothing measured", writes nothing and exits 0.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

NO_CUDA = "no CUDA device: nothing measured"
# ~100M parameters: 12 layers of 768 wide attention and a 2,560 wide MLP (the vocabulary is
# the embedded character tokenizer's, so nearly all parameters are in the layers).
LLAMA_100M = {"hidden_size": 768, "intermediate_size": 2560, "num_hidden_layers": 12,
              "num_attention_heads": 12, "num_key_value_heads": 12,
              "max_position_embeddings": 2048}


def build_llama(out: Path, size: dict, seed: int = 0) -> Path:
    """A randomly initialised Llama of `size` with the embedded char tokenizer, saved in bf16."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from malt.embedded.tiny import build_tokenizer

    tok = build_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), tie_word_embeddings=True, bos_token_id=None,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **size)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def parameters(path: Path) -> int:
    """Parameter count of a saved model, from its safetensors header (no weights loaded)."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
            total += math.prod(f.get_slice(name).get_shape())
    return total


def prompts_by_role(n: int, seed: int = 0) -> dict[str, list]:
    """`n` arith prompts (the chat without its answer) for each role."""
    from malt.embedded.corpus import corpus

    out: dict[str, list] = {"generator": [], "verifier": [], "refiner": []}
    for role, chat in corpus(100 * n, seed=seed):  # roles come mixed; stop once all have n
        if len(out[role]) < n:
            out[role].append(chat[:-1])
        if all(len(v) >= n for v in out.values()):
            break
    return out


def measure_generation(model: Path, prompts: dict[str, list], *, n: int, max_new_tokens: int,
                       batch_size: int) -> dict:
    """hf backend generation in bf16: new tokens per second over all roles, peak memory."""
    import torch

    from malt.backends import ModelSpec, SamplingParams, build_backend
    from malt.config import BackendConfig

    cfg = BackendConfig(name="hf", device="cuda", dtype="bfloat16", batch_size=batch_size)
    backend = build_backend(cfg, {r: ModelSpec(str(model)) for r in prompts})
    params = SamplingParams(n=n, temperature=1.0, max_new_tokens=max_new_tokens)
    first = next(iter(prompts))
    backend.generate(first, prompts[first][:2], params, [0, 1])  # warm-up: kernels, cache
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    tokens, rows, start = 0, 0, time.perf_counter()
    for role, chats in prompts.items():
        out = backend.generate(role, chats, params, list(range(len(chats))))
        tokens += sum(c.num_tokens for row in out for c in row)
        rows += sum(len(row) for row in out)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated()
    backend.close()
    return {"sequences": rows, "new_tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 1), "peak_gpu_memory_mib": mib(peak),
            "settings": {"n": n, "max_new_tokens": max_new_tokens, "batch_size": batch_size,
                         "dtype": "bfloat16", "kv_cache": cfg.kv_cache}}


def measure_training(model: Path, work: Path, *, sft_rows: int, dpo_pairs: int,
                     batch_size: int) -> dict:
    """LoRA SFT then DPO (from the SFT adapter) through malt.train in bf16: tokens/s, peak memory."""
    import torch
    from datasets import Dataset

    from malt.config import TrainConfig
    from malt.lengths import chat_lengths
    from malt.train import lora, synthetic
    from malt.train.dpo import run_dpo
    from malt.train.progress import quiet_libraries
    from malt.train.settings import common_args
    from malt.train.sft import Phase, attention_for, run_sft

    cfg = TrainConfig(bf16=True, batch_size=batch_size, max_length=512, logging_steps=5,
                      save_steps=10**6, warmup_ratio=0.0)
    tok = lora.load_tokenizer(str(model))
    sft_data = Dataset.from_list(synthetic.sft_rows("verifier", sft_rows))
    dpo_data = Dataset.from_list(synthetic.dpo_rows("verifier", dpo_pairs))
    sft_tokens = sum(chat_lengths(tok, [r["prompt"] + r["completion"] for r in sft_data]))
    dpo_tokens = sum(chat_lengths(tok, [r["prompt"] + r[k] for r in dpo_data
                                        for k in ("chosen", "rejected")]))

    def phase(name: str, lr: float) -> Phase:
        return Phase(model=str(model), dest=work / name / "out", run_dir=work / name / "run",
                     learning_rate=lr, epochs=1)

    results = {}
    with quiet_libraries():
        for name, run, tokens in (
            ("sft", lambda: run_sft(cfg, phase("sft", 2e-4), sft_data), sft_tokens),
            ("dpo", lambda: run_dpo(cfg, phase("dpo", 5e-5), dpo_data, work / "sft" / "out"),
             dpo_tokens),
        ):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            metrics = run()
            peak = torch.cuda.max_memory_allocated()
            seconds, seen = metrics["train_runtime"], tokens * metrics["epochs"]
            results[name] = {"rows": metrics["rows"], "steps": metrics["steps"],
                             "rows_dropped": metrics["lengths"]["dropped"],
                             "tokens": int(seen), "train_seconds": round(seconds, 3),
                             "tokens_per_s": round(seen / seconds, 1),
                             "peak_gpu_memory_mib": mib(peak), "status": metrics["status"]}
    results["settings"] = {"dtype": "bfloat16", "lora_r": cfg.lora_r, "batch_size": batch_size,
                           "gradient_checkpointing": common_args(
                               cfg, output_dir=work, learning_rate=1.0, epochs=1.0,
                               seed=0)["gradient_checkpointing"],
                           "attention": {"sft": attention_for(cfg) or "sdpa", "dpo": "sdpa"},
                           "tokens_counted": "chat-formatted prompt + answer tokens; DPO both "
                                             "answers (each pair is two sequences)"}
    return results


def mib(n_bytes: int) -> float:
    return round(n_bytes / 2**20, 1)


def versions() -> dict:
    import torch
    import transformers
    import trl

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "trl": trl.__version__, "cuda": torch.version.cuda,
            "device": torch.cuda.get_device_name(0), "platform": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu_check.json"))
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    from malt.embedded import base_model_path

    start = time.perf_counter()
    results: dict = {"benchmark": "GPU path: hf generation and LoRA SFT + DPO, bf16",
                     "machine": versions()}
    prompts = prompts_by_role(64)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        embedded = base_model_path()
        llama = build_llama(work / "llama-100m", LLAMA_100M)
        results["models"] = {"embedded": {"path": "src/malt/embedded/assets/base",
                                          "parameters": parameters(embedded)},
                             "llama_100m": {"config": LLAMA_100M, "init": "random, seed 0",
                                            "parameters": parameters(llama)}}
        results["generation"] = {
            "embedded": measure_generation(embedded, prompts, n=4, max_new_tokens=128,
                                           batch_size=256),
            "llama_100m": measure_generation(llama, prompts, n=4, max_new_tokens=256,
                                             batch_size=256),
        }
        results["training_llama_100m"] = measure_training(llama, work / "train", sft_rows=1024,
                                                          dpo_pairs=512, batch_size=16)
    results["total_seconds"] = round(time.perf_counter() - start, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
