"""`malt explore` on a labelled synthetic GSM8K run with eval records: the page's index, lazily
parsed trees, escaping of model text, DPO membership, filters, eval chains, errors, and a real
headless browser clicking through the page."""

from __future__ import annotations

import doctest
import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

import malt.explore as explore_module
from malt.cli import main as cli_main
from malt.config import load_config
from malt.credit import label_tree
from malt.errors import MaltError
from malt.io import read_trees, write_json, write_jsonl, write_trees
from malt.records import Branching, Problem
from malt.roledata import preference_pairs, sft_nodes
from malt.runspec import CHECKS
from malt.stages import explore, label
from malt.synthetic import synthetic_forest
from malt.tasks import get_task

EVIL = "</script><b>x</b><!-- <script>alert(1)</script> & \u2028"
PROBLEMS = [Problem(id=f"gsm8k-{i}", question=f"q{i}?" + (EVIL if i == 0 else ""), answer=str(i),
                    task="gsm8k") for i in range(12)]
ROLES = ["generator", "verifier", "refiner"]


def view(g_ok: bool, final_ok: bool, tag: str = "") -> dict:
    """A chain view as `malt.evaluate.scoring.chain_view` writes it (gold is "1")."""
    return {"generator": f"G says {tag}", "generator_answer": "1" if g_ok else "9",
            "generator_correct": g_ok, "verifier": f"V checks {tag}", "verifier_answer": None,
            "refiner": f"R writes {tag}", "answer": "1" if final_ok else "9", "correct": final_ok}


def write_eval(run: Path) -> None:
    """Records of two methods over two seeds, plus a stale method results.json no longer lists."""
    methods = {"malt": {"label": "MALT", "roles": ROLES},
               "sa": {"label": "Single Agent", "roles": ["generator"]}}
    write_json(run / "eval" / "results.json", {"order": ["malt", "sa"], "methods": methods})
    for seed in (0, 1):
        malt_rows = [{"id": f"test-{i}", "question": f"t{i}?", "gold": "1",
                      "chains": [view(False, True, "a"), view(True, False, "b"), view(True, True, "c")],
                      "vote": "1", "votes": 2, "supporters": [0, 2], "no_answer": False, "correct": True,
                      "cost": {"calls": 9, "prompt_tokens": 100, "completion_tokens": 50}}
                     for i in range(3)]
        sa_rows = [{"id": f"test-{i}", "question": f"t{i}?", "gold": "1",
                    "chains": [{"generator": "alone", "answer": "9", "correct": False}], "vote": "9",
                    "votes": 1, "supporters": [0], "no_answer": False, "correct": False} for i in range(3)]
        write_jsonl(run / "eval" / "records" / "malt" / f"seed{seed}.jsonl", malt_rows)
        write_jsonl(run / "eval" / "records" / "sa" / f"seed{seed}.jsonl", sa_rows)
    write_jsonl(run / "eval" / "records" / "stale" / "seed0.jsonl", [{"id": "old", "chains": []}])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run labelled with at most 2 DPO pairs per parent, then explored with a bare config."""
    run = tmp_path_factory.mktemp("explore") / "run"
    trees = list(synthetic_forest(PROBLEMS, Branching(3, 3, 3), seed=1))
    trees[1].nodes[0].completion = EVIL + trees[1].nodes[0].completion
    write_trees(run / "generate" / "trees-00000.jsonl", trees)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")  # the label stage's length meters: no tokenizer lookup
        label.run(config(run, "data.max_pairs_per_parent=2"))
    write_eval(run)
    explore.run(config(run))  # pairs per parent come from label/config.yaml, not from here
    return run


def config(run: Path, *overrides: str):
    return load_config(None, [f"run_dir={run}", "task.name=gsm8k", "models.base=unused", *overrides],
                       checks=CHECKS)


class Scripts(HTMLParser):
    """The page's JSON script elements by id, and every tag seen outside a script."""

    def __init__(self, text: str):
        super().__init__()
        self.scripts: dict[str, str] = {}
        self.tags: list[str] = []
        self._id: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "script" and dict(attrs).get("type") == "application/json":
            self._id = dict(attrs)["id"]

    def handle_data(self, data):
        if self._id is not None:
            self.scripts[self._id] = self.scripts.get(self._id, "") + data

    def handle_endtag(self, tag):
        if tag == "script":
            self._id = None


def page(run: Path) -> Scripts:
    return Scripts((run / "report" / "explore.html").read_text(encoding="utf-8"))


def labelled(run: Path):
    """The run's trees, labelled here as the label stage does (pairs: at most 2 per parent)."""
    task = get_task("gsm8k")
    for tree in read_trees(run / "generate"):
        yield label_tree(tree, task), 2


def test_doctests():
    assert doctest.testmod(explore_module).failed == 0


def test_index_lists_every_question_and_each_tree_round_trips(run):
    scripts = page(run).scripts
    index = json.loads(scripts["malt-index"])
    assert [r["id"] for r in index["trees"]] == [p.id for p in PROBLEMS]
    assert index["trees"][0]["q"] == PROBLEMS[0].question
    assert index["meta"]["max_pairs_per_parent"] == 2 and index["meta"]["settings"] == "label/config.yaml"
    assert [r["name"] for r in index["chain"]] == ROLES
    labels = [json.loads(line) for line in (run / "label" / "labels.jsonl").read_text().splitlines()]
    for n, (tree, row) in enumerate(zip(read_trees(run / "generate"), labels, strict=True)):
        payload = json.loads(scripts[f"tree-{n}"])
        assert payload["question"] == tree.problem.question
        assert [x["text"] for x in payload["nodes"]] == [x.completion for x in tree.nodes]
        assert [(x["id"], x["answer"], x["reward"], x["value"], x["label"]) for x in payload["nodes"]] == [
            (x["id"], x["answer"], x["reward"], x["value"], x["label"]) for x in row["nodes"]]


def test_the_label_stages_diagnostics_are_shown_per_role(run):
    text = (run / "report" / "explore.html").read_text(encoding="utf-8")
    diag = json.loads((run / "label" / "summary.json").read_text())["diagnostics"]
    table = text.split('<details id="diagnostics">')[1].split("</details>")[0]
    rows = table.split("<tr>")[2:]
    assert [r.split("</td>")[0].removeprefix("<td>") for r in rows] == list(diag) == ROLES
    assert f"<td>{diag['refiner']['flips']['wrong->right']}</td>" in rows[2]


def test_model_text_cannot_break_out_of_its_script_element(run):
    text = (run / "report" / "explore.html").read_text(encoding="utf-8")
    assert EVIL not in text and "<!--" not in text and "<b>" not in text
    parsed = page(run)
    assert "b" not in parsed.tags and parsed.tags.count("script") == len(parsed.scripts) + 1
    assert json.loads(parsed.scripts["tree-1"])["nodes"][0]["text"].startswith(EVIL)
    assert EVIL in json.loads(parsed.scripts["malt-index"])["trees"][0]["q"]


def test_sft_and_pair_membership_match_the_role_datasets(run):
    scripts = page(run).scripts
    total = 0
    for n, (tree, cap) in enumerate(labelled(run)):
        nodes = {x["id"]: x for x in json.loads(scripts[f"tree-{n}"])["nodes"]}
        pairs = list(preference_pairs(tree, cap, 0, ("verifier", "refiner")))
        total += len(pairs)
        assert {(c.id, r.id) for c, r in pairs} == {
            (i, o) for i, x in nodes.items() for o in x["chosen_vs"]} == {
            (o, i) for i, x in nodes.items() for o in x["rejected_vs"]}
        assert {i for i, x in nodes.items() if x["sft"]} == {x.id for x in sft_nodes(tree)}
        assert {x["sft"] for x in nodes.values() if x["role"] == "verifier"} <= {"sft_verifier", None}
    summary = json.loads((run / "label" / "summary.json").read_text())
    assert total == sum(summary["dpo_pairs"].values()) > 0


def test_filters_read_counts_that_match_the_labels(run):
    rows = json.loads(page(run).scripts["malt-index"])["trees"]
    summary = json.loads((run / "label" / "summary.json").read_text())
    outcomes = [explore_module.outcome(r["correct"], r["leaves"]) for r in rows]
    assert outcomes.count("correct") == summary["trees_all_correct"]
    assert outcomes.count("wrong") == summary["trees_all_wrong"]
    for row, (tree, cap) in zip(rows, labelled(run), strict=True):
        first = [x.value for x in tree.by_role("generator")]
        assert (row["vmin"], row["vmax"]) == (min(first), max(first))
        assert row["correct"] == sum(x.reward for x in tree.by_role("refiner")) and row["leaves"] == 27
        assert row["pairs"] == len(list(preference_pairs(tree, cap, 0, ("verifier", "refiner"))))


def test_eval_chains_are_grouped_by_question_in_results_order(run):
    scripts = page(run).scripts
    index = json.loads(scripts["malt-index"])
    assert [r["id"] for r in index["eval"]] == ["test-0", "test-1", "test-2"]
    assert index["eval"][0]["right"] == 2 and index["eval"][0]["runs"] == 4  # MALT right, SA wrong
    q = json.loads(scripts["eval-0"])
    assert list(q["seeds"]) == ["0", "1"]
    malt, sa = q["seeds"]["0"]
    assert (malt["method"], malt["label"], sa["method"]) == ("malt", "MALT", "sa")
    assert [c["change"] for c in malt["chains"]] == ["fixed", "broken", None]
    assert [s["role"] for s in malt["chains"][0]["steps"]] == ROLES
    assert malt["chains"][0]["steps"][0] == {"role": "generator", "text": "G says a", "answer": "9",
                                             "correct": False}
    assert malt["chains"][0]["steps"][2]["answer"] == "1" and malt["vote"] == "1"
    assert sa["chains"][0]["steps"] == [{"role": "generator", "text": "alone", "answer": "9",
                                         "correct": False}]
    assert "old" not in [r["id"] for r in index["eval"]]


def test_eval_without_results_takes_every_records_folder_and_reads_roles_from_the_views(tmp_path):
    write_jsonl(tmp_path / "records" / "b" / "seed3.jsonl", [{"id": "x", "chains": [view(True, False)]}])
    write_jsonl(tmp_path / "records" / "a" / "seed3.jsonl", [{"id": "x", "chains": [view(True, True)]}])
    methods, records = explore.read_eval(tmp_path)
    assert [m["name"] for m in methods] == ["a", "b"] and set(records) == {("a", 3), ("b", 3)}
    (q,) = explore_module.eval_questions(methods, records)
    assert [e["roles"] for e in q["seeds"]["3"]] == [ROLES, ROLES]
    assert [e["chains"][0]["change"] for e in q["seeds"]["3"]] == [None, "broken"]
    write_jsonl(tmp_path / "records" / "a" / "seed4.jsonl", [{"id": 7}])
    with pytest.raises(MaltError, match=r"seed4.jsonl:1: not an eval record"):
        explore.read_eval(tmp_path)


def test_cli_writes_the_page_and_a_summary(run, capsys):
    assert cli_main(["explore", f"run_dir={run}", "task.name=gsm8k"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trees"] == 12 and summary["eval_questions"] == 3
    assert summary["eval_methods"] == ["malt", "sa"] and Path(summary["page"]).is_file()


def test_missing_or_empty_trees_are_one_sentence_and_leave_no_page(tmp_path):
    with pytest.raises(MaltError, match="no trees found; run `malt generate` first"):
        explore.run(config(tmp_path))
    (tmp_path / "generate").mkdir()
    (tmp_path / "generate" / "trees-00000.jsonl").write_text("")
    with pytest.raises(MaltError, match="no trees found in the tree shards"):
        explore.run(config(tmp_path))
    assert not (tmp_path / "report" / "explore.html").exists()
    assert not [p for p in (tmp_path / "report").iterdir()]


# ---- a real browser ------------------------------------------------------------------------

def browser():
    """Headless Chromium driven by the system's chromedriver (Selenium never downloads one)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip("needs chromium and chromedriver installed (Debian: chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def screenshot(driver, suffix: str = "") -> None:
    """Save what the browser shows when MALT_EXPLORE_SCREENSHOT is set (a .png path, or any
    other value for the default path)."""
    target = os.environ.get("MALT_EXPLORE_SCREENSHOT")
    if target:
        path = Path(target if target.endswith(".png") else "/tmp/exp/explore.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(path.with_name(path.stem + suffix + path.suffix)))


def test_a_browser_opens_a_tree_and_shows_a_nodes_text_value_and_pairs(run):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    trees = [tree for tree, _ in labelled(run)]
    n = next(i for i, t in enumerate(trees) if any(x.role == "verifier" for x, _ in
                                                   preference_pairs(t, 2, 0, ("verifier",))))
    chosen, rejected = next(preference_pairs(trees[n], 2, 0, ("verifier",)))
    pid = trees[n].problem.id
    driver = browser()
    try:
        driver.get((run / "report" / "explore.html").as_uri())
        assert driver.find_element(By.ID, "tree-count").text == "12 of 12 questions"
        driver.find_element(By.ID, "tree-search").send_keys(f"q{n}?")  # then click: the blur
        assert driver.find_element(By.ID, "tree-count").text == "1 of 12 questions"  # keeps the list
        driver.find_element(By.CSS_SELECTOR, f'#tree-list button[data-n="{n}"]').click()
        node = f'details[data-node="{chosen.id}"]'
        driver.find_element(By.CSS_SELECTOR, f'details[data-node="{chosen.parent_id}"] > summary').click()
        driver.find_element(By.CSS_SELECTOR, f"{node} > summary").click()
        summary = driver.find_element(By.CSS_SELECTOR, f"{node} > summary").text
        assert f"value {chosen.value:.3f}" in summary and "positive" in summary
        assert driver.find_element(By.CSS_SELECTOR, f"{node} > .body > pre.text").text == chosen.completion
        fed = driver.find_element(By.CSS_SELECTOR, f"{node} > .body > ul.fed").text
        assert "SFT: sft_verifier" in fed
        assert f"DPO chosen vs {rejected.id.removeprefix(pid + '/')} (dpo_verifier)" in fed
        screenshot(driver)

        # Model text shows as text: hostile completions and questions make no elements.
        scripts = len(driver.find_elements(By.TAG_NAME, "script"))
        driver.find_element(By.ID, "tree-search").clear()
        driver.find_element(By.CSS_SELECTOR, '#tree-list button[data-n="1"]').click()
        driver.find_element(By.CSS_SELECTOR, 'details[data-node="gsm8k-1/g0"] > summary').click()
        pre = driver.find_element(By.CSS_SELECTOR, 'details[data-node="gsm8k-1/g0"] > .body > pre.text')
        assert pre.text.startswith("</script><b>x</b><!--") and not pre.find_elements(By.XPATH, "./*")
        driver.find_element(By.CSS_SELECTOR, '#tree-list button[data-n="0"]').click()
        assert EVIL.strip() in driver.find_element(By.CSS_SELECTOR, "#tree-view .question").text
        assert not [b for b in driver.find_elements(By.TAG_NAME, "b") if b.text == "x"]
        assert len(driver.find_elements(By.TAG_NAME, "script")) == scripts

        rows = json.loads(page(run).scripts["malt-index"])["trees"]
        Select(driver.find_element(By.ID, "f-outcome")).select_by_value("mixed")
        mixed = sum(0 < r["correct"] < r["leaves"] for r in rows)
        assert driver.find_element(By.ID, "tree-count").text == f"{mixed} of 12 questions"
        driver.find_element(By.ID, "f-pairs").click()
        paired = sum(0 < r["correct"] < r["leaves"] and r["pairs"] > 0 for r in rows)
        assert driver.find_element(By.ID, "tree-count").text == f"{paired} of 12 questions"
        Select(driver.find_element(By.ID, "f-outcome")).select_by_value("all")
        driver.find_element(By.ID, "f-pairs").click()
        Select(driver.find_element(By.ID, "f-stat")).select_by_value("vmax")
        driver.find_element(By.ID, "f-min").send_keys("0.5")
        high = sum(r["vmax"] >= 0.5 for r in rows)
        assert driver.find_element(By.ID, "tree-count").text == f"{high} of 12 questions"

        driver.find_element(By.ID, "tab-eval").click()
        driver.find_element(By.CSS_SELECTOR, '#eval-list button[data-n="0"]').click()
        methods = driver.find_elements(By.CSS_SELECTOR, "#eval-view section.method")
        assert [m.get_attribute("data-method") for m in methods] == ["malt", "sa"]
        chains = methods[0].find_elements(By.CSS_SELECTOR, ".chain")
        assert len(chains) == 3 and "fixed" in chains[0].text and "broken" in chains[1].text
        assert "G says a" in chains[0].text and "R writes a" in chains[0].text
        assert "vote 1 (2 of 3)" in methods[0].text and "9 calls, 150 tokens" in methods[0].text
        screenshot(driver, "-eval")
    finally:
        driver.quit()
