"""Measure a tiny arith model: G accuracy, V's true/false positive rates, G->V->R accuracy.

Generation goes through plain `transformers` `generate` so the builder needs no backend;
the numbers land in `build_report.json` and decide whether a build is in the accuracy band.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from malt.chain import GENERATOR, REFINER, VERIFIER
from malt.records import Messages, Problem
from malt.tasks.arith import TASK, answer_view, critique_flags, generate, iter_problems

MAX_NEW = {GENERATOR: 64, VERIFIER: 80, REFINER: 64}


@dataclass(frozen=True)
class ProbeConfig:
    """What to measure: how many test questions, at which sampling temperature."""

    n: int = 300
    temperature: float = 0.7
    seed: int = 0
    batch_size: int = 100


def complete(model, tok, chats: list[Messages], role: str, temperature: float | None,
             seed: int, batch_size: int = 100) -> list[str]:
    """One completion per chat; `temperature=None` means greedy."""
    import torch

    out: list[str] = []
    torch.manual_seed(seed)
    for i in range(0, len(chats), batch_size):
        texts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
                 for c in chats[i:i + batch_size]]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(model.device)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0} \
            if temperature else {"do_sample": False}
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=MAX_NEW[role], pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id, **sampling)
        new = ids[:, enc["input_ids"].shape[1]:]
        out.extend(tok.batch_decode(new, skip_special_tokens=True))
    return out


def rates(flags: list[bool | None], correct: list[int]) -> dict[str, Any]:
    """V's TPR (flags a wrong G answer) and FPR (flags a right one).

    >>> rates([True, False, True, None], [0, 0, 1, 1])
    {'tpr': 0.5, 'fpr': 0.5, 'no_verdict': 0.25, 'wrong': 2, 'right': 2}
    """
    wrong = [bool(f) for f, c in zip(flags, correct, strict=True) if not c]
    right = [bool(f) for f, c in zip(flags, correct, strict=True) if c]
    return {
        "tpr": _mean(wrong), "fpr": _mean(right),
        "no_verdict": _mean([f is None for f in flags]),
        "wrong": len(wrong), "right": len(right),
    }


def verifier_skills(critiques: list[str], generator: list[str], problems: list[Problem]
                    ) -> dict[str, float]:
    """How often V's own answer is right, and how often its verdict matches its comparison.

    >>> p = TASK.parse_row({"question": "47+8-3+5", "answer": "57"}, "x")
    >>> verifier_skills(["       57\\nG      58\\n       =x\\n       no"], ["Answer: 58"], [p])
    {'derivation_acc': 1.0, 'verdict_consistent': 1.0}
    """
    own = [TASK.critique_answer(v) for v in critiques]
    right = [int(a is not None and TASK.is_equivalent(a, p.answer))
             for a, p in zip(own, problems, strict=True)]
    consistent = [int(a is not None and flag is not None and flag == (a != answer_view(g)))
                  for a, flag, g in zip(own, map(critique_flags, critiques), generator,
                                        strict=True)]
    return {"derivation_acc": _mean(right), "verdict_consistent": _mean(consistent)}


def dev_check(model, tok, problems: list[Problem], temperature: float, seed: int
              ) -> dict[str, float]:
    """G's sampled accuracy and V's sampled TPR/FPR on G's answers (the build's stop check)."""
    g = complete(model, tok, _chats(GENERATOR, problems), GENERATOR, temperature, seed)
    g_ok = _grade(g, problems)
    v = complete(model, tok, _chats(VERIFIER, problems, g), VERIFIER, temperature, seed + 1)
    r = rates([critique_flags(x) for x in v], g_ok)
    skills = verifier_skills(v, g, problems)
    return {"dev_generator_acc": _mean(g_ok), "dev_verifier_tpr": r["tpr"],
            "dev_verifier_fpr": r["fpr"],
            "dev_verifier_derivation_acc": skills["derivation_acc"],
            "dev_verifier_consistent": skills["verdict_consistent"]}


def probe(model, tok, cfg: ProbeConfig = ProbeConfig()) -> dict[str, Any]:
    """Accuracy of G (sampled and greedy), V's rates and the G->V->R chain on test questions."""
    problems = list(iter_problems(generate(cfg.n, "test", seed=cfg.seed)))
    t, s, bs = cfg.temperature, cfg.seed, cfg.batch_size
    g_greedy = complete(model, tok, _chats(GENERATOR, problems), GENERATOR, None, s, bs)
    g = complete(model, tok, _chats(GENERATOR, problems), GENERATOR, t, s, bs)
    g_ok = _grade(g, problems)
    report: dict[str, Any] = {
        "n": len(problems), "temperature": t,
        "generator_acc_greedy": _mean(_grade(g_greedy, problems)),
        "generator_acc": _mean(g_ok),
    }
    for mode, temp in (("sampled", t), ("greedy", None)):
        v = complete(model, tok, _chats(VERIFIER, problems, g), VERIFIER, temp, s + 1, bs)
        r = complete(model, tok, _chats(REFINER, problems, g, v), REFINER, temp, s + 2, bs)
        r_ok = _grade(r, problems)
        report[f"verifier_{mode}"] = {**rates([critique_flags(x) for x in v], g_ok),
                                      **verifier_skills(v, g, problems)}
        report[f"chain_acc_{mode}"] = _mean(r_ok)
        report[f"refiner_fixed_{mode}"] = sum(1 for a, b in zip(g_ok, r_ok, strict=True) if b > a)
        report[f"refiner_broke_{mode}"] = sum(1 for a, b in zip(g_ok, r_ok, strict=True) if b < a)
    report["examples"] = {"question": problems[0].question, "generator": g[0],
                          "verifier": v[0], "refiner": r[0]}
    return report


def _chats(role: str, problems: list[Problem], g: list[str] | None = None,
           v: list[str] | None = None) -> list[Messages]:
    return [TASK.messages(role, p, None if g is None else g[i], None if v is None else v[i])
            for i, p in enumerate(problems)]


def _grade(texts: list[str], problems: list[Problem]) -> list[int]:
    return [TASK.reward(t, p) for t, p in zip(texts, problems, strict=True)]


def _mean(xs: list) -> float:
    return round(sum(xs) / len(xs), 4) if xs else float("nan")
