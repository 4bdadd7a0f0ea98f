"""A toy addition task and deterministic fake Backends for eval tests (no model).

The fake generator answers `a+b` plus a seeded offset (sometimes wrong, sometimes with no
answer at all); the fake refiner repairs the generator's answer with a seeded coin, so
multi-agent chains beat the generator alone and votes beat single chains on average.
`ScriptedBackend` instead writes every chain's G, V and R answers as given by hand.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from malt.backends.base import Completion, SamplingParams
from malt.chain import GENERATOR, REFINER, VERIFIER
from malt.records import Problem
from malt.tasks.base import RolePrompts, Task, field_str, stable_id

_ANSWER = re.compile(r"Answer:\s*(-?\d+)")
_SUM = re.compile(r"What is (\d+)\+(\d+)\?")
_CHAIN = re.compile(r"\[chain (\d+)\]")
_STATED = re.compile(r"I get (-?\d+)")


def _parse(row: dict, where: str) -> Problem:
    q = field_str(row, "question", where)
    return Problem(id=stable_id("toy", q), question=q, answer=str(row["answer"]), task="toy")


def _extract(text: str) -> str | None:
    m = _ANSWER.findall(text)
    return m[-1] if m else None


def _same(a: str, b: str) -> bool:
    try:
        return int(a) == int(b)
    except ValueError:
        return False


TOY = Task(
    name="toy",
    parse_row=_parse,
    extract_fn=_extract,
    equivalent_fn=_same,
    prompts=RolePrompts("Solve it.", "Check it.", "Fix it."),
)


def toy_rows(n: int, start: int = 0) -> list[dict]:
    """Rows of the toy task: question 'What is a+b?' with its sum."""
    return [{"question": f"What is {i}+{2 * i + 1}?", "answer": str(3 * i + 1)}
            for i in range(start, start + n)]


class FakeBackend:
    """Seeded answers: generator right ~50%, refiner repairs ~60% of wrong answers."""

    def __init__(self, specs=None, fail_after: int | None = None):
        self.specs = dict(specs or {})
        self.calls: list[tuple[str, int, int]] = []  # (role, prompts, n)
        self.fail_after = fail_after
        self.closed = False
        # What this backend reported, per role: prompt tokens (once per prompt) and
        # completion tokens (every sample), for checking the token ledgers.
        self.reported: dict[str, list[int]] = {}

    def generate(self, role: str, prompts: Sequence, params: SamplingParams,
                 seeds: Sequence[int]) -> list[list[Completion]]:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("fake backend failure")
        self.calls.append((role, len(prompts), params.n))
        out = []
        counts = self.reported.setdefault(role, [0, 0])
        for messages, seed in zip(prompts, seeds, strict=True):
            a, b = map(int, _SUM.search(messages[-1]["content"]).groups())
            rng = random.Random(seed)
            prompt_tokens = len(messages[-1]["content"].split())
            texts = [self._text(role, a + b, messages, rng) for _ in range(params.n)]
            out.append([Completion(t, len(t.split()), "stop", prompt_tokens) for t in texts])
            counts[0] += prompt_tokens
            counts[1] += sum(len(t.split()) for t in texts)
        return out

    def _text(self, role: str, total: int, messages, rng: random.Random) -> str:
        if role == GENERATOR:
            roll = rng.random()
            if roll < 0.1:
                return "I am not sure."
            return f"Answer: {total if roll < 0.55 else total + rng.choice([1, 2])}"
        if role == REFINER:
            g = _extract(messages[-1]["content"].split("Critique:")[0])
            if g is None or rng.random() < 0.6:
                return f"Fixed. Answer: {total}"
            return f"Keeping it. Answer: {g}"
        return "Critique: check the sum."

    def close(self) -> None:
        self.closed = True


def critique_answer(text: str) -> str | None:
    """The answer a scripted critique states ("I get 7."), or None."""
    m = _STATED.search(text)
    return m.group(1) if m else None


Script = dict[str, list[tuple[int | None, int | None, int | None]]]


class ScriptedBackend:
    """script[question][chain] = (G's, V's, R's answer), None for no answer; seeds are ignored.

    The generator tags its text "[chain i]"; the verifier and refiner prompts quote it, which
    tells them their chain.
    """

    def __init__(self, script: Script, specs=None):
        self.script, self.specs, self.closed = script, dict(specs or {}), False

    def generate(self, role: str, prompts: Sequence, params: SamplingParams,
                 seeds: Sequence[int]) -> list[list[Completion]]:
        out = []
        for messages in prompts:
            content = messages[-1]["content"]
            chains = next(v for q, v in self.script.items() if q in content)
            if role == GENERATOR:
                texts = [self._text(role, i, chains[i]) for i in range(params.n)]
            else:
                i = int(_CHAIN.search(content).group(1))
                texts = [self._text(role, i, chains[i])]
            out.append([Completion(t, 5, "stop") for t in texts])
        return out

    @staticmethod
    def _text(role: str, i: int, answers: tuple) -> str:
        g, v, r = answers
        if role == GENERATOR:
            return f"[chain {i}] " + (f"Answer: {g}" if g is not None else "no idea")
        if role == VERIFIER:
            return f"Critique: I get {v}." if v is not None else "Critique: looks fine."
        return f"Answer: {r}" if r is not None else "Still unsure."

    def close(self) -> None:
        self.closed = True
