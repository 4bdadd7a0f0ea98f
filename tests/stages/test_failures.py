"""What happens when things go wrong: each case ends in one sentence naming the path, early.

Every test runs the real CLI in-process (`malt.cli.main`) and checks the exit status, that
stderr is one line starting `malt <command>: error:` and names the file, and that no
expensive work started.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest

from malt import cli
from malt.io import write_jsonl
from malt.records import Branching, Problem
from malt.stages import generate
from malt.synthetic import synthetic_forest

PROBLEMS = [Problem(id=f"gsm8k-t{i}", question=f"What is {i} + 3?", answer=str(i + 3),
                    task="gsm8k") for i in range(4)]


def one_sentence(capsys, command: str) -> str:
    """stderr of a failed command: exactly one line, the CLI's error format, no traceback."""
    err = capsys.readouterr().err
    assert err.startswith(f"malt {command}: error: "), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def trees_in(run_dir: Path) -> Path:
    """A run dir whose generate stage holds four synthetic GSM8K trees."""
    from malt.io import write_trees

    write_trees(run_dir / "generate" / "trees-00000.jsonl",
                synthetic_forest(PROBLEMS, Branching(2, 2, 2), seed=0))
    return run_dir


@pytest.mark.parametrize("flag", [["--test-questions", "0"], ["--test-questions", "-3"],
                                  ["--questions", "0"]])
def test_bad_demo_arguments_stop_before_generate(flag, tmp_path, capsys, monkeypatch):
    def must_not_run(*a, **kw):
        raise AssertionError("generate ran with bad demo arguments")

    monkeypatch.setattr(generate, "run", must_not_run)
    code = cli.main(["demo", *flag, "--no-progress", f"run_dir={tmp_path / 'run'}"])
    assert code == 2
    err = one_sentence(capsys, "demo")
    assert flag[0] in err and "at least 1" in err
    assert not (tmp_path / "run" / "generate").exists()


def test_a_run_dir_under_a_regular_file(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    run_dir = tmp_path / "file" / "run"
    data = tmp_path / "train.jsonl"
    write_jsonl(data, [{"question": "What is 1 + 2?", "answer": "#### 3"}])
    code = cli.main(["generate", "--no-progress", f"run_dir={run_dir}", "task.name=gsm8k",
                     f"task.train={data}", "models.base=unused"])
    assert code == 2
    err = one_sentence(capsys, "generate")
    assert str(tmp_path / "file") in err


def test_a_read_only_run_dir(tmp_path, capsys, monkeypatch):
    run_dir = trees_in(tmp_path / "run")
    label_dir = run_dir / "label"
    label_dir.mkdir()
    label_dir.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: refuse the folder the way a read-only mount does
        real = tempfile.mkstemp

        def read_only(*a, dir=None, **kw):
            if dir is not None and Path(dir) == label_dir:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
            return real(*a, dir=dir, **kw)

        monkeypatch.setattr(tempfile, "mkstemp", read_only)
    try:
        code = cli.main(["label", f"run_dir={run_dir}", "task.name=gsm8k"])
    finally:
        label_dir.chmod(0o755)
    assert code == 2
    err = one_sentence(capsys, "label")
    assert str(label_dir) in err
    assert not (label_dir / "sft_generator.jsonl").exists()


def test_a_full_disk(tmp_path, capsys, monkeypatch):
    import malt.io

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    run_dir = trees_in(tmp_path / "run")
    monkeypatch.setattr(malt.io.os, "fsync", no_space)
    code = cli.main(["label", f"run_dir={run_dir}", "task.name=gsm8k"])
    assert code == 2
    err = one_sentence(capsys, "label")
    assert str(run_dir / "label") in err and "No space left on device" in err
    assert not list((run_dir / "label").glob(".*.tmp"))


def test_a_training_file_that_is_not_parquet(tmp_path, capsys):
    fake = tmp_path / "train.parquet"
    fake.write_text('{"question": "What is 1 + 2?", "answer": "#### 3"}\n')
    code = cli.main(["generate", "--no-progress", f"run_dir={tmp_path / 'run'}",
                     "task.name=gsm8k", f"task.train={fake}", "models.base=unused"])
    assert code == 2
    err = one_sentence(capsys, "generate")
    assert str(fake) in err and "Parquet" in err


def test_role_data_that_is_not_parquet(tmp_path, capsys):
    label = tmp_path / "run" / "label"
    label.mkdir(parents=True)
    for kind in ("sft", "dpo"):
        for role in ("generator", "verifier", "refiner"):
            (label / f"{kind}_{role}.parquet").write_text("PAR1 but not really")
    code = cli.main(["train", "--role", "generator", f"run_dir={tmp_path / 'run'}",
                     "models.base=unused", "data.format=parquet"])
    assert code == 2
    err = one_sentence(capsys, "train")
    assert str(label / "sft_generator.parquet") in err and "Parquet" in err


@pytest.mark.parametrize("content", ['["a", "list"]', '{"task": "gsm8k", "fingerprints": [1]}'])
def test_an_eval_settings_file_of_the_wrong_shape(content, tmp_path, capsys):
    test = tmp_path / "test.jsonl"
    write_jsonl(test, [{"question": "What is 1 + 2?", "answer": "#### 3"}])
    settings = tmp_path / "run" / "eval" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(content)
    code = cli.main(["eval", "--no-progress", f"run_dir={tmp_path / 'run'}", "task.name=gsm8k",
                     f"task.test={test}", "models.base=base-model", "eval.methods=[sa]"])
    assert code == 2
    err = one_sentence(capsys, "eval")
    assert str(settings) in err and "--restart" in err
    assert settings.read_text() == content


def test_errors_name_the_file_through_a_subprocess_too(tmp_path):
    """The same one line from `python -m malt` (no pytest capture in between)."""
    import subprocess
    import sys

    fake = tmp_path / "train.parquet"
    fake.write_text("not parquet")
    src = Path(__file__).resolve().parents[2] / "src"
    out = subprocess.run([sys.executable, "-m", "malt", "generate", "--no-progress",
                          f"run_dir={tmp_path / 'run'}", "task.name=gsm8k",
                          f"task.train={fake}", "models.base=unused"],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"})
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert str(fake) in out.stderr and "Parquet" in out.stderr
