"""Synthetic forests: trees with known rewards and no model, for tests, benchmarks and demos.

Each completion ends in the task's final-answer convention with either the gold answer or
a wrong one, so grading them exercises the real extractor and equivalence check.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from malt.records import GENERATOR, REFINER, VERIFIER, Branching, Node, Problem, Tree, child_id
from malt.tasks import get_task

# How each task's generator prompt asks for the final answer to be stated.
ANSWER_FORMATS: dict[str, Callable[[str], str]] = {
    "gsm8k": lambda a: f"Final Answer: {a}",
    "math": lambda a: f"The final answer is $\\boxed{{{a}}}$.",
    "csqa": lambda a: f"Final Answer: ({a})",
    "arith": lambda a: f"Final Answer: {a}",
}
WRONG: dict[str, Callable[[str, random.Random], str]] = {
    "csqa": lambda a, rng: rng.choice([c for c in "ABCDE" if c != a]),
}


def _wrong(task: str, gold: str, rng: random.Random) -> str:
    if task in WRONG:
        return WRONG[task](gold, rng)
    try:
        return str(int(float(gold)) + rng.randint(1, 9))
    except ValueError:
        return f"{gold}+{rng.randint(1, 9)}"


def synthetic_tree(problem: Problem, branching: Branching, rng: random.Random,
                   p_correct: float = 0.5, filler: str = "") -> Tree:
    """One tree whose G/R completions are right with probability `p_correct`."""
    task = get_task(problem.task)
    fmt = ANSWER_FORMATS[problem.task]

    def answer_text(step: str) -> str:
        ok = rng.random() < p_correct
        ans = problem.answer if ok else _wrong(problem.task, problem.answer, rng)
        return f"{step}{filler}\n{fmt(ans)}"

    nodes: list[Node] = []
    for g in range(branching.n_g):
        g_text = answer_text(f"Step by step, attempt {g}.")
        g_node = Node(child_id(problem.id, GENERATOR, g), GENERATOR, None,
                      task.messages(GENERATOR, problem), g_text)
        nodes.append(g_node)
        for v in range(branching.n_v):
            v_text = f"Critique {v}: step 1 looks {'right' if rng.random() < 0.5 else 'wrong'}.{filler}"
            v_node = Node(child_id(g_node.id, VERIFIER, v), VERIFIER, g_node.id,
                          task.messages(VERIFIER, problem, generator=g_text), v_text)
            nodes.append(v_node)
            r_prompt = task.messages(REFINER, problem, generator=g_text, critique=v_text)
            for r in range(branching.n_r):
                nodes.append(Node(child_id(v_node.id, REFINER, r), REFINER, v_node.id,
                                  r_prompt, answer_text(f"Refined attempt {r}.")))
    return Tree(problem=problem, branching=branching, nodes=nodes)


def synthetic_forest(problems: list[Problem], branching: Branching = Branching(), seed: int = 0,
                     p_correct: float | None = None, filler_chars: int = 0) -> Iterator[Tree]:
    """Trees for `problems`, deterministic in `seed`. With `p_correct=None` each tree draws
    its own accuracy uniformly, so the forest holds easy, hard and mixed questions;
    `filler_chars` pads completions to a realistic length for benchmarks."""
    filler = " " + "x" * filler_chars if filler_chars else ""
    for p in problems:
        rng = random.Random(f"{seed}:{p.id}")
        rate = rng.uniform(0, 1) if p_correct is None else p_correct
        yield synthetic_tree(p, branching, rng, p_correct=rate, filler=filler)
