"""Terminal tables for the end of `malt demo`: Table 1 and turn-wise accuracy, as text."""

import io

from rich.console import Console

from malt.evaluate.console import table_one, turnwise_table


def stat(mean, std):
    return {"mean": mean, "std": std}


def results(after_v=(0.6, 0.05)):
    """Two methods over two seeds: SA (single agent) and MALT (with turns; after_v None: no V)."""
    return {
        "task": "arith", "seeds": [0, 1], "confidence": 0.95, "order": ["sa", "malt"],
        "methods": {
            "sa": {"label": "Single Agent (SA)", **stat(0.45, 0.05)},
            "malt": {"label": "MALT", **stat(0.7, 0.1), "turnwise": {
                "generator": stat(0.5, 0.0), "verifier": after_v and stat(*after_v),
                "refiner": stat(0.7, 0.1)}},
        },
        "comparisons": {"reference": "malt", "vs": {"sa": {
            "diff": 0.25, "ci_low": 0.1, "ci_high": 0.4, "n_pairs": 40}}},
    }


def text(table) -> list[str]:
    """The table as plain text lines, cells separated by the box characters."""
    out = io.StringIO()
    Console(file=out, width=100, color_system=None).print(table)
    lines = out.getvalue().replace("│", " ").replace("┃", " ").splitlines()
    return [" ".join(line.split()) for line in lines]


def test_table_one_rows():
    lines = text(table_one(results()))
    assert lines[0] == "Table 1: arith accuracy (%, mean ± std over 2 seeds)"
    assert "Method Accuracy (%) MALT − method, 95% CI" in lines
    assert "Single Agent (SA) 45.0 ± 5.0 +25.0 [+10.0, +40.0]" in lines
    assert "MALT 70.0 ± 10.0 (reference)" in lines


def test_turnwise_table_rows_and_missing_v():
    assert "MALT 50.0 ± 0.0 60.0 ± 5.0 70.0 ± 10.0" in text(turnwise_table(results()))
    lines = text(turnwise_table(results(after_v=None)))
    assert "Method after G after V after R" in lines
    assert "MALT 50.0 ± 0.0 — 70.0 ± 10.0" in lines
    assert lines[0] == "Turn-wise accuracy: arith (%)" and lines[-1] == "—: the verifier states no answer"


def test_no_turnwise_table_without_multi_agent_methods():
    res = results()
    del res["methods"]["malt"]["turnwise"]
    assert turnwise_table(res) is None
