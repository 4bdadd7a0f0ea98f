"""Pure rendering of eval results as Markdown: Table 1, ablations, turn-wise accuracy, cost.

Inputs are the dicts `malt eval` writes to results.json (one per task) and, optionally, the
label stage's summary.json; outputs are Markdown strings (the charts are in
`malt.evaluate.charts`). Nothing here reads or writes files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Results = Mapping[str, Any]
NOT_AVAILABLE = "—"
ABLATION = "ablation"  # the methods' group of the paper's Tables 4 and 5


def pct(x: float) -> str:
    """An accuracy in percent with one decimal.

    >>> pct(0.5678)
    '56.8'
    """
    return f"{100 * x:.1f}"


def signed_pct(x: float) -> str:
    """A difference in percentage points with its sign.

    >>> signed_pct(0.031), signed_pct(-0.004), signed_pct(0.0)
    ('+3.1', '-0.4', '+0.0')
    """
    return f"{100 * x:+.1f}"


def method_order(results_list: Sequence[Results], ablations: bool | None = None) -> list[str]:
    """Union of the methods of all results, first appearance first; only the ablations
    (Tables 4 and 5) or only the others when `ablations` is True or False."""
    order: list[str] = []
    for res in results_list:
        order += [m for m in res["order"] if m not in order and (
            ablations is None or (res["methods"][m].get("group") == ABLATION) == ablations)]
    return order


def turn_columns(results_list: Sequence[Results]) -> dict[str, str]:
    """role -> "after G" for every turn any method has, in chain order."""
    out: dict[str, str] = {}
    for res in results_list:
        for name in turnwise_methods(res):
            m = res["methods"][name]
            labels = m.get("turn_labels") or {r: f"after {r[0].upper()}" for r in m["turnwise"]}
            out.update({r: labels[r] for r in m["turnwise"] if r not in out})
    return out


def table_markdown(results_list: Sequence[Results], ablations: bool = False) -> str:
    """Table 1 (or, with `ablations`, the Table-4/5 rows): one row per method; per task,
    mean ± std accuracy and MALT minus it (CI)."""
    head = ["Method"]
    for res in results_list:
        head += [f"{res['task']} acc. (%)", f"{res['task']}: MALT − method, {_level(res)} CI"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    names = method_order(results_list, ablations)
    if not names:
        return ""
    for name in names:
        label = next(r["methods"][name]["label"] for r in results_list if name in r["methods"])
        cells = [label]
        for res in results_list:
            m = res["methods"].get(name)
            cells.append(f"{pct(m['mean'])} ± {pct(m['std'])}" if m else "–")
            cells.append(ci_cell(res, name))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _level(res: Results) -> str:
    return f"{round(100 * res.get('confidence', 0.95))}%"


def ci_cell(res: Results, name: str) -> str:
    """MALT minus `name` with its CI in points, "(reference)" for MALT, "–" without one."""
    comp = res.get("comparisons")
    if not comp:
        return "–"
    if name == comp["reference"]:
        return "(reference)"
    ci = comp["vs"].get(name)
    if ci is None:
        return "–"
    return f"{signed_pct(ci['diff'])} [{signed_pct(ci['ci_low'])}, {signed_pct(ci['ci_high'])}]"


def setup_markdown(results_list: Sequence[Results]) -> str:
    """One line per task: test set, questions, seeds, chains, unanswered counts."""
    lines = []
    for res in results_list:
        per_seed = sorted(set(res["questions_per_seed"].values()))
        no_answer = {n: sum(v["no_answer"] for v in m["per_seed"].values())
                     for n, m in res["methods"].items()}
        worst = max(no_answer, key=no_answer.get)
        unanswered = (f"most unanswered votes: {worst} ({no_answer[worst]} over all seeds)"
                      if no_answer[worst] else "every vote had an answer")
        lines.append(
            f"- **{res['task']}**: `{res['test']}` ({res['test_split']}, {res['test_questions']} "
            f"questions); {'/'.join(map(str, per_seed))} questions per seed; seeds "
            f"{', '.join(map(str, res['seeds']))}; {res['chains']} chains per vote; {unanswered}"
        )
    return "\n".join(lines) + "\n"


def refinement_markdown(results_list: Sequence[Results]) -> str:
    """Per multi-agent method: how often V -> R turned G's wrong answer right, or right wrong."""
    lines = ["| Task | Method | chains | single-chain acc. (%) | fixed (wrong → right) | "
             "broken (right → wrong) | net |", "|---|---|---|---|---|---|---|"]
    for res in results_list:
        for name in res["order"]:
            m = res["methods"][name]
            seeds = list(m["per_seed"].values())
            if not seeds or "fixed" not in seeds[0]:
                continue
            chains = sum(v["chains"] for v in seeds)
            fixed, broken = sum(v["fixed"] for v in seeds), sum(v["broken"] for v in seeds)
            acc = sum(v["chain_accuracy"] * v["chains"] for v in seeds) / chains if chains else 0
            lines.append(f"| {res['task']} | {m['label']} | {chains} | {pct(acc)} | {fixed} | "
                         f"{broken} | {fixed - broken:+d} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def cost_markdown(results_list: Sequence[Results]) -> str:
    """Per method: model calls and tokens per question, accuracy per 1,000 tokens ("" when
    the records hold no costs)."""
    lines = ["| Task | Method | calls / question | tokens / question | acc. (%) | "
             "acc. per 1k tokens (%) |", "|---|---|---|---|---|---|"]
    for res in results_list:
        for name in res["order"]:
            m = res["methods"][name]
            tokens = m.get("tokens_per_question")
            if not tokens:
                continue
            lines.append(f"| {res['task']} | {m['label']} | {m['calls_per_question']:.1f} | "
                         f"{tokens:,.0f} | {pct(m['mean'])} | {pct(m['mean'] / tokens * 1000)} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


_BARS = " ▁▂▃▄▅▆▇█"


def histogram_cell(counts: Sequence[int]) -> str:
    """A value histogram as a row of bars (0 to 1, left to right).

    >>> histogram_cell([0, 1, 2, 4, 8])
    ' ▁▂▄█'
    """
    top = max(counts) if counts else 0
    return "".join(_BARS[round(8 * c / top)] if top else " " for c in counts)


def diagnostics_markdown(summary: Any) -> str:
    """Per role: value histogram, positive rate, pairs per tree, flips, verdicts, diversity,
    from the label summary's `diagnostics` ("" when it has none)."""
    diag = summary.get("diagnostics") if isinstance(summary, Mapping) else None
    if not diag:
        return ""
    lines = ["| role | values 0 → 1 | positive | DPO pairs / tree | wrong → right | "
             "right → wrong | verdict TPR / FPR | distinct answers / siblings (collapsed) |",
             "|---|---|---|---|---|---|---|---|"]
    for role, d in diag.items():
        pairs = d.get("pairs_per_tree")
        flips = d.get("flips")
        verdicts = d.get("verdicts")
        div = d.get("diversity")
        rate = d["values"]["positive_rate"]
        cells = [
            role, f"`{histogram_cell(d['values']['histogram'])}`",
            NOT_AVAILABLE if rate is None else pct(rate),
            f"{pairs['mean']:.2f}" if pairs else NOT_AVAILABLE,
            str(flips["wrong->right"]) if flips else NOT_AVAILABLE,
            str(flips["right->wrong"]) if flips else NOT_AVAILABLE,
            f"{_maybe(verdicts['tpr'])} / {_maybe(verdicts['fpr'])}" if verdicts else NOT_AVAILABLE,
            f"{div['distinct_answers_mean']:.2f} ({div['collapsed']} of {div['sibling_groups']})"
            if div else NOT_AVAILABLE,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _maybe(x: float | None) -> str:
    return NOT_AVAILABLE if x is None else f"{x:.2f}"


def rounds_markdown(rounds: Sequence[Mapping[str, Any]]) -> str:
    """Iterative MALT: per round, each method's accuracy (MALT's with its CI against the
    first other method evaluated), the trees' leaf accuracy, distinct answers, DPO pairs."""
    methods = list(dict.fromkeys(n for r in rounds for n in r.get("methods", {})))
    head = ["round", "threshold", *methods, "leaf acc. (%)", "distinct answers (last role)",
            "collapsed groups (%)", "DPO pairs"]
    lines = ["# Iterative MALT: rounds\n", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for r in rounds:
        cells = [str(r["round"]), f"{r['threshold']:g}"]
        for name in methods:
            m = r.get("methods", {}).get(name)
            cells.append(mean_std_cell(m) if m else NOT_AVAILABLE)
        last = list(r.get("distinct_answers", {}).values())[-1:] or [None]
        share = r.get("collapsed_share")
        pairs = ", ".join(f"{k} {v}" for k, v in r.get("dpo_pairs", {}).items() if v)
        cells += [pct(r["leaf_accuracy"]) if r.get("leaf_accuracy") is not None else NOT_AVAILABLE,
                  _maybe(last[0]), NOT_AVAILABLE if share is None else pct(share), pairs or "0"]
        lines.append("| " + " | ".join(cells) + " |")
    cis = [(r["round"], name, ci) for r in rounds for name, ci in r.get("comparisons", {}).items()]
    if cis:
        lines += ["", "MALT minus each method, paired 95% CI per round (points):", ""]
        lines += [f"- round {rnd}, {name}: {signed_pct(ci['diff'])} [{signed_pct(ci['ci_low'])}, "
                  f"{signed_pct(ci['ci_high'])}]" for rnd, name, ci in cis]
    stopped = [r for r in rounds if r.get("stopped")]
    if stopped:
        lines += ["", f"Stopped after round {stopped[0]['round']}: {stopped[0]['stopped']}."]
    return "\n".join(lines) + "\n"


def mean_std_cell(stat: Mapping[str, float] | None) -> str:
    """A {"mean", "std"} accuracy as "mean ± std" in percent; "—" when not available.

    >>> mean_std_cell({"mean": 0.5, "std": 0.05}), mean_std_cell(None)
    ('50.0 ± 5.0', '—')
    """
    return NOT_AVAILABLE if stat is None else f"{pct(stat['mean'])} ± {pct(stat['std'])}"


def turnwise_methods(res: Results) -> list[str]:
    """The methods of one results dict that have turn-wise accuracy (G -> V -> R), in order."""
    return [n for n in res["order"] if res["methods"][n].get("turnwise")]


def turnwise_markdown(results_list: Sequence[Results]) -> str:
    """Per multi-agent method: accuracy of the vote after each role ("" if none)."""
    columns = turn_columns(results_list)
    lines = ["| Task | Method | " + " | ".join(columns.values()) + " |",
             "|---" * (2 + len(columns)) + "|"]
    for res in results_list:
        for name in turnwise_methods(res):
            m = res["methods"][name]
            cells = [mean_std_cell(m["turnwise"].get(role)) for role in columns]
            lines.append(f"| {res['task']} | {m['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def leakage_markdown(results_list: Sequence[Results]) -> str:
    """The split check and the question overlap with the training trees, per task."""
    lines = []
    for res in results_list:
        leak = res.get("leakage", {})
        ov = leak.get("overlap")
        if ov is None:
            found = "no training trees found to compare"
        else:
            found = (f"{ov['overlap']} of {ov['eval_questions']} test questions "
                     f"({pct(ov['overlap_fraction'])}%) also appear among "
                     f"{ov['training_questions']} training-tree questions")
            if ov["examples"]:
                found += f" (e.g. {', '.join(ov['examples'][:3])})"
        sources = ", ".join(f"`{s}`" for s in leak.get("training_sources", [])) or "none recorded"
        lines.append(f"- **{res['task']}**: trees generated from {sources}; {found}.")
    return "\n".join(lines) + "\n"


def role_data_markdown(summary: Any) -> str:
    """The label stage's summary: its counts, then a statistic x role table for per-role counts.

    >>> print(role_data_markdown({"trees": 2, "sft_rows": {"generator": 3, "refiner": 1}}), end="")
    | statistic | value |
    |---|---|
    | trees | 2 |
    <BLANKLINE>
    | per role | generator | refiner |
    |---|---|---|
    | sft_rows | 3 | 1 |
    """
    if not isinstance(summary, Mapping):
        return f"{_fmt(summary)}\n"
    roles = _role_names(summary)
    per_role = {k: v for k, v in summary.items() if k not in _SKIP and isinstance(v, Mapping)
                and v and set(v) <= set(roles)}
    flat = [(k, v) for k, v in _flatten(summary, "") if k.split(".")[0] not in {*_SKIP, *per_role}]
    lines = ["| statistic | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in flat]
    if per_role:
        roles = [r for r in roles if any(r in v for v in per_role.values())]
        lines += ["", "| per role | " + " | ".join(roles) + " |", "|---" * (len(roles) + 1) + "|"]
        lines += [f"| {k} | " + " | ".join(_fmt(v.get(r, "")) for r in roles) + " |"
                  for k, v in per_role.items()]
    return "\n".join(lines) + "\n"


_SKIP = {"files", "seconds", "lengths", "diagnostics"}  # paths, timings; own sections


def _role_names(summary: Mapping[str, Any]) -> list[str]:
    """The roles (and model slots) a label summary counts, in its order: the keys of its
    `positives` and `sft_rows` tables."""
    names: list[str] = []
    for key in ("positives", "sft_rows"):
        table = summary.get(key)
        if isinstance(table, Mapping):
            names += [k for k in table if k not in names]
    return names


def _flatten(obj: Any, prefix: str) -> list[tuple[str, Any]]:
    if isinstance(obj, Mapping):
        out = []
        for k, v in obj.items():
            out += _flatten(v, f"{prefix}{k}.") if isinstance(v, Mapping) else [(f"{prefix}{k}", v)]
        return out
    return [(prefix.rstrip(".") or "value", obj)]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


DIAGNOSTICS_NOTE = (
    "From the training trees (`label/summary.json`, `diagnostics`): each role's node values "
    "(bars: share of nodes per tenth of the value range), the share labelled positive, DPO pairs "
    "per tree, how often an answering role turned the answer it reviewed from wrong to right "
    "and back, how often a verifier called a wrong answer wrong (TPR) and a right one wrong "
    "(FPR) where the task reads verdicts, and distinct answers among siblings (collapsed: one "
    "answer among all siblings, nothing left to contrast).\n")

COST_NOTE = (
    "Per question, averaged over seeds: the model calls a method makes and the prompt plus "
    "completion tokens the backend reported for them (a question's k first-role samples share "
    "one prompt). SA + MV@9 votes over as many samples as MALT makes calls.\n")

ABLATION_NOTE = (
    "Table 4: one role from the base model, the others MALT's (base G, base V, base R). "
    "Table 5: MALT's agents in shorter chains (G only, G+V, G+R; a G+V chain answers with "
    "the critique's own answer where the verifier states one, else G's). All with majority "
    "vote; CI as in Table 1.\n")

TURNWISE_NOTE = (
    "Accuracy (%, mean ± std over seeds) of the majority vote over the method's chains (chain 0 "
    "alone without a vote) taken after each turn: the generators' answers, the answers the "
    "critiques state (— where the verifier states none), the refiners' final answers.\n")


def report_markdown(
    results_list: Sequence[Results], label_summary: Any = None, chart: str | None = None,
    turnwise_chart: str | None = None,
) -> str:
    """The whole report: Table 1, turn-wise accuracy, setup, leakage, charts, role data."""
    turns = turnwise_markdown(results_list)
    ablations = table_markdown(results_list, ablations=True)
    parts = ["# MALT evaluation\n\n", "## Table 1: accuracy (mean ± std over seeds)\n\n",
             table_markdown(results_list),
             "\nCI: paired bootstrap over (seed, question) of MALT's per-question correctness "
             "minus the method's, in percentage points; positive means MALT is better.\n",
             *_section("Ablations (the paper's Tables 4 and 5)",
                       ablations and f"{ablations}\n{ABLATION_NOTE}"),
             *_section("Turn-wise accuracy", turns and f"{turns}\n{TURNWISE_NOTE}"),
             "\n## Setup\n\n", setup_markdown(results_list),
             *_section("What the verifier and refiner do to the generator's answers",
                       refinement_markdown(results_list)),
             *_section("Cost: model calls and tokens", cost_markdown(results_list)
                       and f"{cost_markdown(results_list)}\n{COST_NOTE}"),
             "\n## Test split and overlap with the training trees\n\n",
             leakage_markdown(results_list)]
    if chart:
        parts += ["\n## Accuracy chart\n\n", f"![accuracy per method]({chart})\n"]
    if turnwise_chart:
        parts += ["\n## Turn-wise accuracy chart\n\n",
                  f"![accuracy after each turn]({turnwise_chart})\n"]
    if label_summary is not None:
        parts += ["\n## Role data (label stage)\n\n", role_data_markdown(label_summary)]
        parts += _section("Per-role credit diagnostics", diagnostics_markdown(label_summary)
                          and f"{diagnostics_markdown(label_summary)}\n{DIAGNOSTICS_NOTE}")
    return "".join(parts)


def _section(title: str, body: str) -> list[str]:
    return [f"\n## {title}\n\n", body] if body else []
