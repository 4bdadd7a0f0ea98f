"""Table 1 and turn-wise accuracy as terminal tables (rich), for the end of `malt demo`.

Pure: each function turns one task's eval results dict into a `rich.table.Table`; printing
is the caller's. Cells are formatted exactly as in the Markdown report (`malt.evaluate.render`).
"""

from __future__ import annotations

from rich.table import Table

from malt.evaluate.render import (
    Results,
    ci_cell,
    mean_std_cell,
    turn_columns,
    turnwise_methods,
)


def table_one(res: Results) -> Table:
    """One row per method: accuracy mean ± std over seeds, and MALT minus it with its CI."""
    seeds = f"{len(res['seeds'])} seed" + ("s" if len(res["seeds"]) != 1 else "")
    level = f"{round(100 * res.get('confidence', 0.95))}%"
    table = Table(title=f"Table 1: {res['task']} accuracy (%, mean ± std over {seeds})",
                  title_justify="left")
    table.add_column("Method")
    table.add_column("Accuracy (%)", justify="right")
    table.add_column(f"MALT − method, {level} CI", justify="right")
    reference = (res.get("comparisons") or {}).get("reference")
    for name in res["order"]:
        m = res["methods"][name]
        table.add_row(m["label"], mean_std_cell(m), ci_cell(res, name),
                      style="bold" if name == reference else None)
    return table


def turnwise_table(res: Results) -> Table | None:
    """Accuracy of the vote after G, V and R per multi-agent method (None when there is none)."""
    names = turnwise_methods(res)
    if not names:
        return None
    columns = turn_columns([res])
    missing = any(res["methods"][n]["turnwise"].get(role) is None for n in names
                  for role in columns)
    table = Table(title=f"Turn-wise accuracy: {res['task']} (%)", title_justify="left",
                  caption="—: the verifier states no answer" if missing else None,
                  caption_justify="left")
    table.add_column("Method")
    for label in columns.values():
        table.add_column(label, justify="right")
    for name in names:
        m = res["methods"][name]
        table.add_row(m["label"], *(mean_std_cell(m["turnwise"].get(role)) for role in columns))
    return table
