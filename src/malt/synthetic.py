"""Synthetic forests: trees with known rewards and no model, for tests, benchmarks and demos.

Each completion ends in the task's final-answer convention with either the gold answer or
a wrong one, so grading them exercises the real extractor and equivalence check.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from malt.chain import ANSWER, CRITIQUE, DEFAULT, RoleChain
from malt.records import Branching, Node, Problem, Tree, child_id
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
                   p_correct: float = 0.5, filler: str = "", chain: RoleChain = DEFAULT) -> Tree:
    """One tree of `chain` whose answering roles' completions are right with probability
    `p_correct` (the others write a critique), nodes depth first."""
    task = get_task(problem.task)
    fmt = ANSWER_FORMATS[problem.task]

    def answer_text(step: str) -> str:
        ok = rng.random() < p_correct
        ans = problem.answer if ok else _wrong(problem.task, problem.answer, rng)
        return f"{step}{filler}\n{fmt(ans)}"

    def text(level: int, i: int) -> str:
        if chain.roles[level].answers:
            return answer_text(f"{'Step by step, attempt' if level == 0 else 'Refined attempt'} {i}.")
        return f"Critique {i}: step 1 looks {'right' if rng.random() < 0.5 else 'wrong'}.{filler}"

    nodes: list[Node] = []

    def expand(level: int, parent: Node | None, path: dict[str, str]) -> None:
        role = chain.roles[level]
        src = {slot: path[name] for slot, name in role.sees if name in path}
        prompt = task.messages(role.template, problem, answer=src.get(ANSWER),
                               critique=src.get(CRITIQUE))
        parent_id = parent.id if parent is not None else None
        for i in range(branching.counts[level]):
            node = Node(child_id(parent_id or problem.id, role.letter, i), role.name, parent_id,
                        prompt, text(level, i))
            nodes.append(node)
            if level + 1 < len(chain):
                expand(level + 1, node, {**path, role.name: node.completion})

    expand(0, None, {})
    return Tree(problem=problem, branching=branching, nodes=nodes)


def synthetic_forest(problems: list[Problem], branching: Branching = Branching(3, 3, 3),
                     seed: int = 0, p_correct: float | None = None, filler_chars: int = 0,
                     chain: RoleChain = DEFAULT) -> Iterator[Tree]:
    """Trees for `problems`, deterministic in `seed`. With `p_correct=None` each tree draws
    its own accuracy uniformly, so the forest holds easy, hard and mixed questions;
    `filler_chars` pads completions to a realistic length for benchmarks."""
    filler = " " + "x" * filler_chars if filler_chars else ""
    for p in problems:
        rng = random.Random(f"{seed}:{p.id}")
        rate = rng.uniform(0, 1) if p_correct is None else p_correct
        yield synthetic_tree(p, branching, rng, p_correct=rate, filler=filler, chain=chain)
