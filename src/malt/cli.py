"""The `malt` command: one subcommand per stage, each `--config run.yaml [key=value ...]`.

Every subcommand is short and linear: load the config, call the stage's `run`, print its
summary as JSON (`malt demo` prints tables for a person instead). The same `run` functions
are the Python API (`malt.stages.<stage>.run(cfg)`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from malt.config import load_config
from malt.errors import MaltError
from malt.io import os_error_sentence
from malt.runspec import CHECKS

# subcommand -> (stage module, one-line help). Each module defines `add_arguments(parser)`
# and `main(cfg, args) -> dict | None` (the JSON summary printed at the end; None: nothing).
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("malt.stages.generate", "sample G -> V -> R trees for the training questions"),
    "label": ("malt.stages.label", "grade tree leaves, assign values and labels, write role datasets"),
    "train": ("malt.stages.train", "per-role LoRA SFT then DPO (TRL + PEFT) on the role datasets"),
    "eval": ("malt.stages.eval", "run the paper's settings on the test split with majority vote"),
    "report": ("malt.stages.report", "render Table 1 (Markdown) and an accuracy chart from eval results"),
    "explore": ("malt.stages.explore", "one offline HTML page to browse the trees, credit and eval chains"),
    "iterate": ("malt.stages.iterate", "iterative MALT: rounds of generate, label, train "
                "(and eval), each sampling with the previous round's agents"),
    "demo": ("malt.stages.demo", "the whole pipeline on the embedded tiny model and arith task (CPU)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="malt", description="Multi-agent LLM training (MALT).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", help="run config YAML (built-in defaults when omitted)")
        p.add_argument("overrides", nargs="*", metavar="key=value",
                       help="dotted config overrides, e.g. generate.verifier.n=2")
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        # A stage may ship its own default config (the demo does); --config replaces it.
        cfg = load_config(args.config or getattr(module, "DEFAULT_CONFIG", None), args.overrides,
                          checks=CHECKS)
        summary = module.main(cfg, args)
    except MaltError as e:
        print(f"malt {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file system refusal no stage foresaw: still one sentence, its path
        print(f"malt {args.command}: error: {os_error_sentence(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"malt {args.command}: interrupted; finished work is kept on disk", file=sys.stderr)
        return 130
    if summary is not None:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
