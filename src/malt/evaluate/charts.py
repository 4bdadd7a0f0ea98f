"""The report's charts (matplotlib): accuracy per method, and accuracy after each turn.

Pure: results dicts in (as `malt eval` writes them), Figures out; saving is the caller's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from malt.evaluate.render import Results, method_order, turn_columns, turnwise_methods


def accuracy_figure(results_list: Sequence[Results]):
    """Grouped bars of accuracy per method, error bars = std over seeds.

    With several tasks each task has its colour; with one, each method source (base, STaR,
    MALT) has its colour.
    """
    from matplotlib.figure import Figure

    names = method_order(results_list)
    fig = Figure(figsize=(max(6.0, 1.1 * len(names) + 2), 4.8), dpi=120)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(results_list))
    colors = [f"C{i}" for i in range(10)]
    for t, res in enumerate(results_list):
        idx = [i for i, n in enumerate(names) if n in res["methods"]]
        ms = [res["methods"][names[i]] for i in idx]
        xs = [i + (t - (len(results_list) - 1) / 2) * width for i in idx]
        if len(results_list) == 1:
            sources = list(dict.fromkeys(m.get("source", "") for m in ms))
            color = [colors[sources.index(m.get("source", "")) % 10] for m in ms]
        else:
            color = colors[t % 10]
        bars = ax.bar(xs, [100 * m["mean"] for m in ms], width, color=color,
                      yerr=[100 * m["std"] for m in ms], capsize=3, label=res["task"])
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    labels = [next(r["methods"][n]["label"] for r in results_list if n in r["methods"])
              for n in names]
    ax.set_xticks(range(len(names)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%)")
    # Room above the tallest error bar for its label, without squashing low accuracies.
    top = max(100 * (m["mean"] + m["std"]) for r in results_list for m in r["methods"].values())
    ax.set_ylim(0, min(110.0, max(20.0, 1.2 * top + 5)))
    ax.set_title("Accuracy per method (mean over seeds; error bars: std)")
    if len(results_list) > 1:
        ax.legend(title="task")
    else:
        ax.set_xlabel(f"task: {results_list[0]['task']}  (colour: base / STaR / MALT models)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def turnwise_figure(results_list: Sequence[Results]):
    """One panel per task: a line per multi-agent method through its turns (std bars).

    A method with a turn without accuracy (a verifier that states no answer) is drawn
    dotted, straight past it. Methods are
    nudged apart sideways so that their error bars stay readable.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.0 + 5.5 * len(results_list), 4.6), dpi=120)
    axes = fig.subplots(1, len(results_list), squeeze=False)[0]
    for ax, res in zip(axes, results_list, strict=True):
        names = turnwise_methods(res)
        columns = turn_columns([res])
        for i, name in enumerate(names):
            m = res["methods"][name]
            points = [(x, m["turnwise"][role]) for x, role in enumerate(columns)
                      if m["turnwise"].get(role) is not None]
            shift = 0.03 * (i - (len(names) - 1) / 2)
            full = len(points) == len(m["turnwise"])
            ax.errorbar([x + shift for x, _ in points], [100 * p["mean"] for _, p in points],
                        yerr=[100 * p["std"] for _, p in points], marker="o", capsize=3,
                        color=f"C{i % 10}", linestyle="-" if full else ":",
                        label=m["label"] + ("" if full else " (a critic states no answer)"))
        ax.set_xticks(range(len(columns)), list(columns.values()))
        ax.set_xlim(-0.3, len(columns) - 0.7)
        ax.set_ylabel("accuracy of the vote (%)")
        ax.set_title(f"{res['task']}: accuracy after each turn")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def rounds_figure(rounds: Sequence[Mapping[str, Any]]):
    """Iterative MALT: each method's accuracy per round (std bars), and the last role's
    distinct answers among siblings (the diversity that collapses over rounds)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5, 4.2), dpi=120)
    acc, div = fig.subplots(1, 2)
    xs = [r["round"] for r in rounds]
    names = list(dict.fromkeys(n for r in rounds for n in r.get("methods", {})))
    for i, name in enumerate(names):
        pts = [(r["round"], r["methods"][name]) for r in rounds if name in r.get("methods", {})]
        acc.errorbar([x for x, _ in pts], [100 * m["mean"] for _, m in pts],
                     yerr=[100 * m["std"] for _, m in pts], marker="o", capsize=3,
                     color=f"C{i % 10}", label=name)
    acc.set_xlabel("round")
    acc.set_ylabel("accuracy (%)")
    acc.set_xticks(xs)
    acc.grid(alpha=0.3)
    if names:
        acc.legend(fontsize=8)
    last = [list(r.get("distinct_answers", {}).values())[-1:] for r in rounds]
    div.plot(xs, [v[0] if v else float("nan") for v in last], marker="o", color="C3")
    div.set_xlabel("round")
    div.set_ylabel("distinct answers among siblings (last role)")
    div.set_xticks(xs)
    div.grid(alpha=0.3)
    fig.tight_layout()
    return fig
