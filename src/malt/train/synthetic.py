"""Tiny synthetic role datasets in the label stage's format, for tests, benchmarks and demos."""

from __future__ import annotations

from pathlib import Path

from malt.chain import DEFAULT, RoleChain
from malt.io import write_jsonl

SYSTEM = {"role": "system", "content": "Answer briefly."}


def sft_rows(role: str, n: int) -> list[dict]:
    """`n` prompt/completion rows in the label stage's conversational format."""
    return [
        {
            "prompt": [SYSTEM, {"role": "user", "content": f"[{role}] What is {i} + {i}?"}],
            "completion": [{"role": "assistant",
                            "content": f"{i} + {i} = {2 * i}. Final: {2 * i}"}],
        }
        for i in range(n)
    ]


def dpo_rows(role: str, n: int) -> list[dict]:
    """`n` prompt/chosen/rejected rows (chosen says the right sum, rejected a wrong one)."""
    return [
        {
            "prompt": [SYSTEM, {"role": "user",
                                "content": f"[{role}] Check: {i} + {i} = {2 * i + 1}?"}],
            "chosen": [{"role": "assistant", "content": f"Wrong, it is {2 * i}."}],
            "rejected": [{"role": "assistant", "content": "Correct."}],
        }
        for i in range(n)
    ]


def write_label_dir(label_dir: Path, n_sft: int = 8, n_dpo: int = 8,
                    chain: RoleChain = DEFAULT) -> Path:
    """A label-stage folder with SFT files for the chain's model slots and DPO files for
    the slots whose roles have pairs (V and R by default)."""
    for role in chain:
        write_jsonl(label_dir / f"sft_{role.model}.jsonl", sft_rows(role.model, n_sft))
        if role.pairs:
            write_jsonl(label_dir / f"dpo_{role.model}.jsonl", dpo_rows(role.model, n_dpo))
    return label_dir
