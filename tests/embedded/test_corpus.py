"""The pretraining corpus: seeded, train-split only, role formats with the designed flaws."""

from __future__ import annotations

import random

from malt.embedded.corpus import CorpusMix, claims, corpus, critique, refine
from malt.records import GENERATOR, REFINER, VERIFIER
from malt.tasks.arith import (
    TASK,
    critique_flags,
    parse_question,
    parse_states,
    render_solution,
    split_of,
)


def _question(chat) -> str:
    user = chat[1]["content"]
    return user.split("\n")[0].removeprefix("Q: ")


def test_corpus_is_seeded_and_train_only():
    a = list(corpus(300, seed=5))
    assert a == list(corpus(300, seed=5))
    assert a != list(corpus(300, seed=6))
    assert all(split_of(_question(chat)) == "train" for _, chat in a)


def test_prompts_are_the_task_prompts():
    for role, chat in corpus(60, seed=0):
        assert [m["role"] for m in chat] == ["system", "user", "assistant"]
        system = {GENERATOR: TASK.prompts.generator_system, VERIFIER: TASK.prompts.verifier_system,
                  REFINER: TASK.prompts.refiner_system}[role]
        assert chat[0]["content"] == system


def test_generator_slips_at_the_designed_rate():
    mix = CorpusMix(g_slip=0.2)
    rng = random.Random(0)
    right = wrong_steps = total_steps = 0
    for _ in range(3000):
        p = parse_question("50+3-4+7")
        got = claims(rng, p, mix.g_slip)
        value = p.start
        for (op, d), c in zip(p.steps, got, strict=True):
            truth = value + d if op == "+" else value - d
            wrong_steps += c != truth
            total_steps += 1
            value = c  # slips chain: later steps start from the claimed value
        right += got[-1] == p.answer
    assert abs(wrong_steps / total_steps - 0.2) < 0.02
    assert 0.45 < right / 3000 < 0.6  # about 0.8**3, plus slips that cancel


def test_verifier_misses_and_invents_at_the_designed_rates():
    mix = CorpusMix(v_miss=0.3, v_false=0.1)
    rng = random.Random(1)
    p = parse_question("50+3-4+7")
    wrong_claims = [54, 50, 57]  # step 1 slipped, later steps right from the claim
    def flags(claimed):
        return bool(critique_flags(critique(rng, p, claimed, mix)[0]))

    misses = sum(not flags(wrong_claims) for _ in range(2000))
    inventions = sum(flags(p.values()) for _ in range(2000))
    assert abs(misses / 2000 - 0.3 * 0.9**2) < 0.04  # missed, and nothing else flagged
    assert abs(inventions / 2000 - (1 - 0.9**3)) < 0.04


def test_verifier_rederives_its_own_chain():
    mix = CorpusMix(v_miss=0.0, v_false=0.0)
    p = parse_question("50+3-4+7")
    text, checked = critique(random.Random(0), p, [54, 50, 57], mix)
    assert checked == p.values()  # its own chain, not G's
    assert [m for _, _, m in parse_states(text)] == ["ok", "no", "no", "no"]
    assert text.endswith("Wrong at step 1.")
    # Every critique line has the width of G's lines: V's line k sits a fixed distance after
    # G's line k in the verifier's context, and after its own line k-1.
    g_text = render_solution(p.start, p.steps, [54, 50, 57])
    assert {len(x) for x in text.splitlines()[:-1]} == {len(x) for x in g_text.splitlines()[:-1]}


def test_refiner_follows_the_verifier_or_ignores_it():
    mix = CorpusMix(r_ignore=0.25, g_slip=0.0)
    rng = random.Random(2)
    p = parse_question("50+3-4+7")
    claimed = [54, 50, 57]
    checked = p.values()  # V flags step 1 and re-derives the rest
    outcomes = [refine(rng, p, claimed, checked, mix) for _ in range(2000)]
    fixed = sum(o == p.values() for o in outcomes)
    copied = sum(o == claimed for o in outcomes)
    assert fixed + copied == 2000
    assert abs(copied / 2000 - 0.25) < 0.04


def test_examples_follow_the_role_formats():
    for role, chat in corpus(200, seed=3):
        answer = chat[2]["content"]
        p = parse_question(_question(chat))
        if role == VERIFIER:
            assert critique_flags(answer) is not None
            assert len(parse_states(answer)) == len(p.steps) + 1  # the question, each step
        else:
            assert TASK.extract_answer(answer) is not None
            assert len(parse_states(answer)) == len(p.steps) + 1  # the question, then each step
