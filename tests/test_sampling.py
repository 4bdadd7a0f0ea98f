"""The level-by-level tree sampler over a fake backend and over the real task prompts."""

from __future__ import annotations

import pytest

from conftest import shared_data
from malt.backends.base import Completion, SamplingParams
from malt.chain import DEFAULT_NAMES as ROLES
from malt.chain import GENERATOR, REFINER, VERIFIER
from malt.errors import MaltError
from malt.records import Problem, check_shape
from malt.sampling import branching_of, prompt_seed, sample_trees
from toy_task import FakeBackend


def _sampling(n_g=2, n_v=3, n_r=2):
    return {
        GENERATOR: SamplingParams(n=n_g),
        VERIFIER: SamplingParams(n=n_v),
        REFINER: SamplingParams(n=n_r),
    }


def _problems(task, k=3):
    return [
        Problem(id=f"toy-{i}", question=f"What is {i} + {i}?", answer=str(2 * i), task="toy")
        for i in range(k)
    ]


def test_trees_have_the_right_shape_ids_and_prompts(gen_task):
    backend = FakeBackend()
    trees, stats = sample_trees(gen_task, _problems(gen_task), backend, _sampling(), run_seed=7)
    assert [t.problem.id for t in trees] == ["toy-0", "toy-1", "toy-2"]
    tree = trees[1]
    check_shape(tree)  # raises on any id, parent or count mismatch
    ids = [n.id for n in tree.nodes]
    assert ids[:2] == ["toy-1/g0", "toy-1/g1"]
    assert "toy-1/g1/v2/r1" in ids and len(ids) == len(set(ids)) == 2 + 6 + 12
    by_id = {n.id: n for n in tree.nodes}
    g, v, r = by_id["toy-1/g1"], by_id["toy-1/g1/v2"], by_id["toy-1/g1/v2/r1"]
    assert g.prompt[-1]["content"] == "What is 1 + 1?"
    assert g.completion in v.prompt[-1]["content"]
    assert g.completion in r.prompt[-1]["content"] and v.completion in r.prompt[-1]["content"]
    assert (r.parent_id, v.parent_id, g.parent_id) == (v.id, g.id, None)
    # G and R nodes carry the extracted answer; V nodes and credit fields stay empty.
    assert g.answer == g.completion.rsplit(" ", 1)[1] and v.answer is None
    assert all(n.reward is None and n.value is None and n.label is None for n in tree.nodes)
    assert all(n.num_tokens == 5 and n.finish_reason == "stop" for n in tree.nodes)
    assert stats.generations == {GENERATOR: 6, VERIFIER: 18, REFINER: 36}
    assert stats.total_tokens == 5 * 60


def test_one_backend_call_per_level_with_all_prompts_of_the_chunk(gen_task):
    backend = FakeBackend()
    sample_trees(gen_task, _problems(gen_task, 4), backend, _sampling(3, 3, 3), run_seed=0)
    assert backend.calls == [(GENERATOR, 4), (VERIFIER, 12), (REFINER, 36)]


def test_samples_do_not_depend_on_chunking(gen_task):
    problems = _problems(gen_task, 3)
    whole, _ = sample_trees(gen_task, problems, FakeBackend(), _sampling(), run_seed=3)
    part, _ = sample_trees(gen_task, problems[1:], FakeBackend(), _sampling(), run_seed=3)
    assert [t.to_dict() for t in whole[1:]] == [t.to_dict() for t in part]
    other, _ = sample_trees(gen_task, problems, FakeBackend(), _sampling(), run_seed=4)
    assert other[0].nodes[0].completion != whole[0].nodes[0].completion


def test_prompt_seeds_differ_by_parent_and_role():
    seeds = {prompt_seed(0, p, r) for p in ("q/g0", "q/g1", "q") for r in ROLES}
    assert len(seeds) == 9


def test_branching_follows_each_roles_n():
    assert branching_of(_sampling(1, 2, 4)).counts == (1, 2, 4)


class _ShortBackend(FakeBackend):
    def generate(self, role, prompts, params, seeds):
        out = super().generate(role, prompts, params, seeds)
        return [o[:-1] for o in out] if role == VERIFIER else out


def test_a_backend_returning_too_few_completions_is_a_clear_error(gen_task):
    with pytest.raises(MaltError, match="1 verifier completions for prompt 0, expected 2"):
        sample_trees(gen_task, _problems(gen_task, 1), _ShortBackend(), _sampling(1, 2, 1), 0)


def test_duplicate_problem_ids_in_a_chunk_are_refused(gen_task):
    p = _problems(gen_task, 1)
    with pytest.raises(MaltError, match="same problem id twice"):
        sample_trees(gen_task, p + p, FakeBackend(), _sampling(), 0)


REAL_TASKS = {
    "gsm8k": "gsm8k/train.jsonl",
    "math": "math/train.jsonl",
    "csqa": "commonsenseqa/train_rand_split.jsonl",
}


@pytest.mark.parametrize("name", sorted(REAL_TASKS))
def test_real_task_prompts_make_valid_trees(name):
    data = shared_data()
    if not data.is_dir():
        pytest.skip("public datasets not found (set MALT_SHARED_DATA)")
    from malt.tasks import get_task

    task = get_task(name)
    problems = task.load(str(data / REAL_TASKS[name]), limit=2)
    trees, _ = sample_trees(task, problems, _AnswerBackend(problems), _sampling(2, 2, 2), 0)
    for tree, problem in zip(trees, problems, strict=True):
        check_shape(tree)
        g = tree.by_role(GENERATOR)[0]
        assert problem.question in g.prompt[-1]["content"]
        assert g.prompt[0]["role"] == "system" and g.prompt[0]["content"]
        r = tree.by_role(REFINER)[0]
        assert g.completion in r.prompt[-1]["content"]
        # The backend states the gold answer, so every G and R node must grade as correct.
        assert all(task.reward(n.completion, problem) == 1 for n in tree.by_role(REFINER))
        assert all(n.answer is not None for n in tree.by_role(GENERATOR))


class _AnswerBackend:
    """Answers every prompt with the gold answer in the task's final-answer format."""

    def __init__(self, problems):
        self.problems = problems

    def generate(self, role, prompts, params, seeds):
        out = []
        for messages in prompts:
            p = next(p for p in self.problems if p.question in messages[-1]["content"])
            text = (
                f"Reasoning... The final answer is \\boxed{{{p.answer}}}. Final Answer: {p.answer}"
            )
            out.append([Completion(text, 9, "stop")] * params.n)
        return out

    def close(self):
        pass
