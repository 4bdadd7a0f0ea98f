"""Pure rendering of the trajectory explorer: labelled trees and eval records -> one HTML page.

The page opens from disk with no server and no network: its CSS and script are inline
(`malt.explore_assets`), its data is JSON in `<script type="application/json">` elements.
A GSM8K-sized forest (7,473 trees of 39 nodes) must stay responsive, so nothing big is
parsed up front: a compact index (one row per tree and per eval question) is read when the
page loads, and each tree (`tree-N`) or eval question (`eval-N`) only when it is opened.
Model text is data: the script shows it with `textContent` only, and JSON embedded here has
every `<` escaped, so no completion can close its element or open a comment.

Nothing here reads or writes files; `malt.stages.explore` does, and streams the page in
parts (`page_parts`) so that memory stays flat however many trees there are.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from malt.chain import RoleChain
from malt.explore_assets import CSS, JS
from malt.records import Node, Tree
from malt.roledata import sft_nodes

INDEX_ID = "malt-index"


def script_json(element_id: str, obj: Any) -> str:
    """`obj` as a JSON script element that no string inside it can break out of.

    >>> script_json("x", {"t": "</script><!--"})
    '<script type="application/json" id="x">{"t":"\\\\u003c/script>\\\\u003c!--"}</script>\\n'
    """
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return f'<script type="application/json" id="{html.escape(element_id)}">{data}</script>\n'


def membership(tree: Tree, chain: RoleChain, pairs: Iterable[tuple[Node, Node]]
               ) -> dict[str, dict[str, Any]]:
    """Per node id: the SFT set it fed (`sft_<model slot>`, None when negative) and the
    sibling ids it was chosen over and rejected against in DPO pairs."""
    slot = {r.name: r.model for r in chain}
    out: dict[str, dict[str, Any]] = {
        n.id: {"sft": None, "chosen_vs": [], "rejected_vs": []} for n in tree.nodes}
    for n in sft_nodes(tree):
        out[n.id]["sft"] = f"sft_{slot[n.role]}"
    for chosen, rejected in pairs:
        out[chosen.id]["chosen_vs"].append(rejected.id)
        out[rejected.id]["rejected_vs"].append(chosen.id)
    return out


def tree_payload(tree: Tree, chain: RoleChain, pairs: Sequence[tuple[Node, Node]]) -> dict[str, Any]:
    """What the page shows of one labelled tree (prompts are left out: the question and the
    outputs above a node are already on screen)."""
    fed = membership(tree, chain, pairs)
    p = tree.problem
    return {
        "id": p.id, "question": p.question, "gold": p.answer, "pairs": len(pairs),
        "nodes": [{"id": n.id, "role": n.role, "parent": n.parent_id, "text": n.completion,
                   "answer": n.answer, "reward": n.reward, "value": n.value, "label": n.label,
                   "tokens": n.num_tokens, "finish": n.finish_reason, **fed[n.id]}
                  for n in tree.nodes],
    }


def tree_row(tree: Tree, chain: RoleChain, pairs: int) -> dict[str, Any]:
    """The tree's index row: id, question, correct and total leaves, DPO pairs, and the
    lowest and highest value of its first-level nodes (the filters read these)."""
    leaves = tree.by_role(chain.leaf.name)
    first = [n.value for n in tree.by_role(chain.roles[0].name) if n.value is not None]
    return {"id": tree.problem.id, "q": tree.problem.question,
            "correct": sum(n.reward or 0 for n in leaves), "leaves": len(leaves), "pairs": pairs,
            "vmin": min(first, default=None), "vmax": max(first, default=None)}


def outcome(correct: int, leaves: int) -> str:
    """`correct`, `wrong` or `mixed`: whether all, none or some of a tree's leaves are right.

    >>> outcome(27, 27), outcome(0, 27), outcome(5, 27)
    ('correct', 'wrong', 'mixed')
    """
    return "correct" if correct == leaves else "wrong" if correct == 0 else "mixed"


def chain_steps(view: Mapping[str, Any], roles: Sequence[str]) -> list[dict[str, Any]]:
    """One eval chain view (`malt.evaluate.scoring.chain_view`) as a step per role: its text,
    its answer and whether that is right (None for a critic's)."""
    steps = []
    for i, role in enumerate(roles):
        last = i == len(roles) - 1
        steps.append({"role": role, "text": view.get(role, ""),
                      "answer": view.get("answer" if last else f"{role}_answer"),
                      "correct": view.get("correct" if last else f"{role}_correct")})
    return steps


def chain_change(view: Mapping[str, Any], roles: Sequence[str]) -> str | None:
    """`fixed` (first role wrong, final answer right), `broken` (the reverse) or None, as
    `malt.evaluate.scoring.seed_summary` counts them.

    >>> roles = ["generator", "verifier", "refiner"]
    >>> chain_change({"generator_correct": False, "correct": True}, roles)
    'fixed'
    >>> chain_change({"generator_correct": True, "correct": False}, roles)
    'broken'
    >>> chain_change({"correct": True}, ["generator"]) is None
    True
    """
    first = f"{roles[0]}_correct" if roles else None
    if len(roles) < 2 or first not in view:
        return None
    if view["correct"] and not view[first]:
        return "fixed"
    if view[first] and not view["correct"]:
        return "broken"
    return None


def view_roles(view: Mapping[str, Any]) -> list[str]:
    """The roles of a chain view, in chain order, from its keys (when results.json is gone).

    >>> view_roles({"generator": "t", "generator_answer": "1", "generator_correct": False,
    ...             "verifier": "c", "verifier_answer": None, "refiner": "r", "answer": "2",
    ...             "correct": True})
    ['generator', 'verifier', 'refiner']
    """
    return [k for k in view if k not in ("answer", "correct")
            and not k.endswith(("_answer", "_correct"))]


def method_entry(name: str, label: str, roles: Sequence[str] | None,
                 record: Mapping[str, Any]) -> dict[str, Any]:
    """One method's record of one question: its vote and each chain's steps."""
    views = record.get("chains", [])
    names = list(roles) if roles else (view_roles(views[0]) if views else [])
    return {"method": name, "label": label, "roles": names, "vote": record.get("vote"),
            "votes": record.get("votes"), "supporters": record.get("supporters", []),
            "no_answer": record.get("no_answer", False), "correct": bool(record.get("correct")),
            "cost": record.get("cost"),
            "chains": [{"steps": chain_steps(v, names), "answer": v.get("answer"),
                        "correct": bool(v.get("correct")), "change": chain_change(v, names)}
                       for v in views]}


def eval_questions(methods: Sequence[Mapping[str, Any]],
                   records: Mapping[tuple[str, int], Sequence[Mapping[str, Any]]]
                   ) -> list[dict[str, Any]]:
    """Records regrouped by question: per seed, every method's entry in `methods` order.

    `methods` are `{"name", "label", "roles"}` dicts; `records` maps (method, seed) to its
    rows. Questions come in order of first appearance, seeds ascending.
    """
    questions: dict[str, dict[str, Any]] = {}
    for seed in sorted({s for _, s in records}):
        for m in methods:
            for row in records.get((m["name"], seed), ()):
                q = questions.setdefault(row["id"], {"id": row["id"], "question": row.get("question", ""),
                                                     "gold": row.get("gold"), "seeds": {}})
                entry = method_entry(m["name"], m["label"], m.get("roles"), row)
                q["seeds"].setdefault(str(seed), []).append(entry)
    return list(questions.values())


def eval_row(question: Mapping[str, Any]) -> dict[str, Any]:
    """An eval question's index row: how many (method, seed) votes were right, of how many."""
    entries = [e for es in question["seeds"].values() for e in es]
    return {"id": question["id"], "q": question["question"],
            "right": sum(e["correct"] for e in entries), "runs": len(entries)}


def page_parts(meta: Mapping[str, Any], trees: Iterable[tuple[Tree, Sequence[tuple[Node, Node]]]],
               chain: RoleChain, questions: Sequence[Mapping[str, Any]] = (),
               diagnostics: Mapping[str, Any] | None = None) -> Iterator[str]:
    """The page, in parts to write one after another: head, one element per tree and per
    eval question, then the index (built on the way) and the script.

    `trees` yields labelled trees with their DPO pairs; `meta` is shown in the header
    (run dir, task, credit settings, ...) and travels in the index; `diagnostics` (the label
    summary's per-role diagnostics) is shown as a table under the header.
    """
    yield _head(meta, diagnostics_html(diagnostics) if diagnostics else "")
    rows = []
    for n, (tree, pairs) in enumerate(trees):
        rows.append(tree_row(tree, chain, len(pairs)))
        yield script_json(f"tree-{n}", tree_payload(tree, chain, pairs))
    eval_rows = []
    for n, q in enumerate(questions):
        eval_rows.append(eval_row(q))
        yield script_json(f"eval-{n}", q)
    index = {"meta": dict(meta), "chain": chain_meta(chain), "trees": rows, "eval": eval_rows}
    yield script_json(INDEX_ID, index)
    yield f"<script>\n{JS}</script>\n</body>\n</html>\n"


def diagnostics_html(diagnostics: Mapping[str, Any]) -> str:
    """The per-role credit diagnostics (`malt.diagnostics`) as a collapsible table.

    >>> "<td>verifier</td>" in diagnostics_html({"verifier": {"values": {"histogram": [1, 0],
    ...     "positive_rate": 0.5}, "verdicts": {"tpr": 0.9, "fpr": 0.1}}})
    True
    """
    def cell(x: Any) -> str:
        return f"<td>{html.escape('—' if x is None else str(x))}</td>"

    head = ["role", "values 0 → 1", "positive rate", "DPO pairs / tree", "wrong → right",
            "right → wrong", "verdict TPR", "verdict FPR", "distinct answers / siblings",
            "collapsed groups"]
    rows = []
    for role, d in diagnostics.items():
        flips, verdicts = d.get("flips") or {}, d.get("verdicts") or {}
        pairs, div = d.get("pairs_per_tree") or {}, d.get("diversity") or {}
        values = d.get("values", {})
        rows.append("<tr>" + "".join(cell(x) for x in (
            role, " ".join(map(str, values.get("histogram", []))), values.get("positive_rate"),
            pairs.get("mean"), flips.get("wrong->right"), flips.get("right->wrong"),
            verdicts.get("tpr"), verdicts.get("fpr"), div.get("distinct_answers_mean"),
            div.get("collapsed"))) + "</tr>")
    return ('<details id="diagnostics"><summary>Per-role credit diagnostics (training trees)'
            '</summary>\n<table><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in head)
            + "</tr>\n" + "\n".join(rows) + "\n</table></details>\n")


def chain_meta(chain: RoleChain) -> list[dict[str, Any]]:
    """What the script needs of each role: name, letter, model slot, answers, pairs."""
    return [{"name": r.name, "letter": r.letter, "model": r.model, "answers": r.answers,
             "pairs": r.pairs} for r in chain]


def _head(meta: Mapping[str, Any], under_header: str = "") -> str:
    title = html.escape(f"malt explore: {meta.get('run_dir', '')}")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{title}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n"
            f'<header id="top"></header>\n{under_header}<nav id="tabs"></nav>\n'
            '<main id="app"></main>\n')
