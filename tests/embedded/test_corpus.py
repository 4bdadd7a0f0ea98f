"""The pretraining corpus: seeded, train-split only, role formats with the designed flaws."""

from __future__ import annotations

import random

from malt.chain import GENERATOR, REFINER, VERIFIER
from malt.embedded.corpus import CorpusMix, claims, corpus, critique, refine
from malt.tasks.arith import (
    TASK,
    critique_answer,
    critique_flags,
    parse_question,
    parse_states,
    split_of,
)


def _question(chat) -> str:
    user = chat[1]["content"]
    return user.split("\n")[-1].removeprefix("Q: ")


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


def test_verifier_checks_independently_of_g():
    mix = CorpusMix(v_slip=0.1)
    rng = random.Random(1)
    p = parse_question("50+3-4+7")
    right, wrong = str(p.answer), str(p.answer + 5)  # 5 off: no single slip lands there
    false_alarms = sum(critique(rng, p, right, mix)[1] is False for _ in range(3000))
    misses = sum(critique(rng, p, wrong, mix)[1] for _ in range(3000))
    # V flags a right answer only when its own derivation slipped (1 - 0.9**3 of the time) ...
    assert abs(false_alarms / 3000 - (1 - 0.9**3)) < 0.03
    # ... and misses a wrong one only when it slipped to exactly G's value.
    assert misses / 3000 < 0.01


def test_verdict_always_matches_the_comparison():
    rng = random.Random(4)
    p = parse_question("50+3-4+7")
    for theirs in ("56", "57", "none"):
        for _ in range(200):
            text, agreed = critique(rng, p, theirs, CorpusMix(v_slip=0.3))
            assert critique_flags(text) is (not agreed)
            assert agreed == (critique_answer(text) == theirs)
            # V's derivation is its own: the question, then one line per step.
            assert [s for _, s in parse_states(text)] == ["+3-4+7", "-4+7", "+7", ""]


def test_refiner_follows_the_verdict_or_ignores_it():
    mix = CorpusMix(r_ignore=0.25, g_slip=0.0)
    rng = random.Random(2)
    p = parse_question("50+3-4+7")
    kept = [refine(rng, p, "57", True, mix) for _ in range(500)]
    assert set(kept) == {"Answer: 57"}  # V agreed: G's answer kept
    outcomes = [refine(rng, p, "57", False, mix) for _ in range(2000)]
    rederived = sum(len(parse_states(o)) == 4 and TASK.extract_answer(o) == "56"
                    for o in outcomes)
    ignored = sum(o == "Answer: 57" for o in outcomes)
    assert rederived + ignored == 2000
    assert abs(ignored / 2000 - 0.25) < 0.04
    # With no G answer to keep, R always re-derives.
    assert all(len(parse_states(refine(rng, p, "none", False, mix))) == 4 for _ in range(200))


def test_examples_follow_the_role_formats():
    for role, chat in corpus(300, seed=3):
        answer = chat[2]["content"]
        p = parse_question(_question(chat))
        if role == VERIFIER:
            assert critique_flags(answer) is not None and critique_answer(answer) is not None
            assert len(parse_states(answer)) == len(p.steps) + 1  # the question, each step
            assert chat[1]["content"].startswith("A: ")  # G's answer only, then the question
            assert chat[1]["content"].count("\n") == 1
        elif role == REFINER:
            assert TASK.extract_answer(answer) is not None
            assert "\nC: Right.\n" in chat[1]["content"] or "\nC: Wrong.\n" in chat[1]["content"]
        else:
            assert TASK.extract_answer(answer) is not None
            assert len(parse_states(answer)) == len(p.steps) + 1  # the question, then each step
