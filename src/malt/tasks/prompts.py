"""Role prompt wording shared by the tasks, in the MALT paper's zero-shot chain-of-thought style.

Each task only fills in what it asks for (a math problem, a multiple-choice question) and
its final-answer marker; the roles' jobs read the same everywhere:

* the generator solves step by step and ends with the marked final answer;
* the verifier critiques that answer step by step and says whether it is correct, without
  having to solve the problem itself;
* the refiner uses the question, the initial answer and the critique to write a corrected,
  complete solution that ends with the same marker.
"""

from __future__ import annotations

from malt.tasks.base import RolePrompts


def role_prompts(subject: str, final_answer: str) -> RolePrompts:
    """The three role prompts for a task about `subject` whose answers end with `final_answer`.

    >>> p = role_prompts("math word problem", "Final Answer: <number>")
    >>> all("Final Answer: <number>" in s for s in (p.generator_system, p.refiner_system))
    True
    """
    generator = (
        f"You are the Generator in a team of three agents solving a {subject}. "
        "Think step by step: reason through the problem carefully and show your work. "
        f"End your response with the final answer on its own line, exactly in the form "
        f"{final_answer}"
    )
    verifier = (
        f"You are the Verifier in a team of three agents solving a {subject}. You are given "
        "the question and an initial answer written by the Generator. Critique the initial "
        "answer step by step: check each step of its reasoning and calculation, point out any "
        "error and explain why it is wrong, or say that the answer is correct if you find no "
        "error. Do not write a full new solution; your critique will be given to the Refiner."
    )
    refiner = (
        f"You are the Refiner in a team of three agents solving a {subject}. You are given "
        "the question, an initial answer written by the Generator and a critique of it written "
        "by the Verifier. Use the critique where it is right and ignore it where it is wrong, "
        "then write a corrected, complete step-by-step solution. End your response with the "
        f"final answer on its own line, exactly in the form {final_answer}"
    )
    return RolePrompts(generator_system=generator, verifier_system=verifier, refiner_system=refiner)
