"""SFT throughput on a tiny local model: padded vs padding-free vs packed batches, one run.

    python bench/bench_train.py [--rows 256] [--threads N]

Trains the same LoRA SFT epoch three ways through malt's SFT phase (TRL SFTTrainer) and
reports real (non-pad) tokens per second (best of interleaved rounds); writes
bench/results/train.json. Rows are GSM8K
training questions with their reference solutions (from MALT_SHARED_DATA, else
<repo>/../shared/data), falling back to synthetic rows of varied length when absent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SYSTEM = {"role": "system", "content": "Solve the problem step by step."}


def shared_data() -> Path:
    return Path(os.environ.get("MALT_SHARED_DATA", ROOT / ".." / "shared" / "data"))


def rows(n: int, seed: int) -> tuple[list[dict], str]:
    """`n` SFT rows in TRL conversational format, and where they came from."""
    path = shared_data() / "gsm8k" / "train.jsonl"
    if path.is_file():
        with path.open(encoding="utf-8") as f:
            items = [json.loads(line) for _, line in zip(range(n), f, strict=False)]
        pairs, source = [(r["question"], r["answer"]) for r in items], "gsm8k train"
    else:
        rng = random.Random(seed)
        pairs = [(f"What is {i} + {i}?", "Think. " * rng.randint(5, 120) + str(2 * i))
                 for i in range(n)]
        source = "synthetic (shared data not found)"
    return [{"prompt": [SYSTEM, {"role": "user", "content": q}],
             "completion": [{"role": "assistant", "content": a}]} for q, a in pairs], source


def run_mode(name: str, base: Path, data, work: Path, batch: int, max_length: int) -> dict:
    """One SFT epoch in mode `name`; real tokens per second of training."""
    from malt.config import TrainConfig
    from malt.train.sft import Phase, build_trainer

    flags = {"padded": {"padding_free": False}, "padding_free": {"padding_free": True},
             "packed": {"packing": True}}[name]
    cfg = TrainConfig(batch_size=batch, max_length=max_length, logging_steps=1000,
                      save_steps=100000, warmup_ratio=0.0, **flags)
    phase = Phase(model=str(base), dest=work / name / "sft", run_dir=work / name / "run",
                  learning_rate=2e-4, epochs=1)
    trainer, lengths = build_trainer(cfg, phase, data)
    ds = trainer.train_dataset
    real_tokens = sum(sum(1 for t in lab) for lab in ds["input_ids"])
    start = time.perf_counter()
    out = trainer.train()
    seconds = time.perf_counter() - start
    return {"mode": name, "rows_per_step_or_blocks": batch, "steps": out.global_step,
            "train_rows": len(ds), "rows_dropped_too_long": lengths["dropped"],
            "real_tokens": real_tokens,
            "seconds": round(seconds, 3), "tokens_per_s": round(real_tokens / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2,
                        help="interleaved rounds of the three modes; the best round counts")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: all cores)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "train.json"))
    args = parser.parse_args()

    import torch
    from datasets import Dataset

    from malt.embedded.tiny import init_model

    if args.threads:
        torch.set_num_threads(args.threads)
    data_rows, source = rows(args.rows, seed=0)
    data = Dataset.from_list(data_rows)
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {"padded": [], "padding_free": [], "packed": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = init_model(work / "base", seed=0)
        for _ in range(args.repeats):  # interleaved, so load from other processes hits all modes
            runs["padded"].append(run_mode("padded", base, data, work, args.batch, args.max_length))
            runs["padding_free"].append(
                run_mode("padding_free", base, data, work, args.batch, args.max_length))
            # Packed blocks hold max_length tokens: keep tokens per step close to the padded run.
            first = runs["padded"][0]
            mean_len = first["real_tokens"] / max(1, first["train_rows"])
            blocks = max(1, round(args.batch * mean_len / args.max_length))
            runs["packed"].append(run_mode("packed", base, data, work, blocks, args.max_length))
    padded, free, packed = (max(runs[m], key=lambda r: r["tokens_per_s"]) for m in runs)
    results = {
        "benchmark": "SFT tokens/s, tiny Llama (~0.9M params, char tokenizer), LoRA, fp32",
        "data": source, "rows": args.rows, "batch": args.batch, "max_length": args.max_length,
        "torch_threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "repeats": args.repeats, "best": [padded, free, packed], "all_runs": runs,
        "speedup_padding_free_vs_padded": round(free["tokens_per_s"] / padded["tokens_per_s"], 2),
        "speedup_packed_vs_padded": round(packed["tokens_per_s"] / padded["tokens_per_s"], 2),
        "target": ">= 1.5x tokens/s for padding-free or packed over padded",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
