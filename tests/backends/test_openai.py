"""The openai backend against a fault-injecting local server and a real `transformers serve`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from openai_fault_server import FaultServer

from malt.backends import ModelSpec, SamplingParams, build_backend
from malt.backends.openai import redact
from malt.chain import DEFAULT_NAMES as ROLES
from malt.chain import GENERATOR, REFINER, VERIFIER
from malt.config import BackendConfig, load_config
from malt.errors import MaltError
from malt.records import Problem, check_shape
from malt.sampling import sample_trees

SECRET = "sk-test-do-not-leak-123"


def _backend(url, **kw):
    cfg = BackendConfig(
        name="openai",
        base_url=url,
        api_key_env="MALT_TEST_KEY",
        **{"timeout_s": 0.5, "max_retries": 3, "max_concurrency": 4, **kw},
    )
    return build_backend(cfg, {r: ModelSpec("toy-model") for r in ROLES})


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("MALT_TEST_KEY", SECRET)


def _problems(k=2):
    return [
        Problem(id=f"toy-{i}", question=f"Q{i}: what is {i} + 1?", answer=str(i + 1), task="toy")
        for i in range(k)
    ]


def _sampling(n=2, max_new_tokens=16):
    return {r: SamplingParams(n=n, max_new_tokens=max_new_tokens) for r in ROLES}


def test_every_node_is_produced_despite_injected_faults(gen_task):
    faults = ["429", "500", "timeout", "drop", "badjson", "empty", "429", "500"]
    with FaultServer(faults=faults) as server:
        backend = _backend(server.url, max_concurrency=2)
        trees, stats = sample_trees(gen_task, _problems(), backend, _sampling(), run_seed=1)
    for tree in trees:
        check_shape(tree)
        assert all("seed=" in n.completion for n in tree.nodes)
    assert stats.generations == {GENERATOR: 4, VERIFIER: 8, REFINER: 16}
    for fault in set(faults):
        assert server.count(fault) == faults.count(fault)
    assert server.count("ok") == 2 + 4 + 8  # one n=2 request per prompt
    assert all(body["n"] == 2 and body["max_tokens"] == 16 for what, body in server.log)


def test_a_server_that_ignores_n_gets_fanned_out_requests(gen_task):
    with FaultServer(honour_n=False) as server:
        backend = _backend(server.url)
        out = backend.generate(
            "generator", [[{"role": "user", "content": "hi"}]] * 2, SamplingParams(n=3), [7, 8]
        )
        assert backend.server_n is False
        first_call = len(server.log)
        backend.generate(
            "generator", [[{"role": "user", "content": "hi"}]], SamplingParams(n=3), [7]
        )
    assert [len(c) for c in out] == [3, 3]
    assert len({c.text for c in out[0]}) == 3  # each fanned-out request has its own seed
    assert first_call == 6 and len(server.log) == 9  # later calls skip the n probe
    assert all("n" not in body for _, body in server.log[first_call:])
    with FaultServer(honour_n=True) as server:
        honoured = _backend(server.url).generate(
            "generator", [[{"role": "user", "content": "hi"}]], SamplingParams(n=3), [7]
        )
    assert honoured[0][0].text == out[0][0].text  # sample 0 has the same seed either way


def test_the_retry_budget_ends_in_a_clear_error():
    with FaultServer(fail_after=0) as server:
        backend = _backend(server.url, max_retries=2)
        with pytest.raises(MaltError, match=r"HTTP 500 .*after 2 retries") as err:
            backend.generate(
                "verifier", [[{"role": "user", "content": "x"}]], SamplingParams(n=1), [0]
            )
    assert server.count("500") == 3 and server.url in str(err.value)
    assert SECRET not in str(err.value)


def test_invalid_replies_are_retried_within_the_budget_then_fail():
    with FaultServer(faults=["badjson"] * 10) as server:
        with pytest.raises(MaltError, match="3 replies in a row were not valid"):
            _backend(server.url, max_retries=2).generate(
                "refiner", [[{"role": "user", "content": "x"}]], SamplingParams(n=1), [0]
            )
    assert server.count("badjson") == 3


def test_an_unreachable_server_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    with pytest.raises(MaltError, match="could not reach the server"):
        _backend(f"http://127.0.0.1:{port}/v1", max_retries=1).generate(
            "generator", [[{"role": "user", "content": "x"}]], SamplingParams(n=1), [0]
        )


def test_a_trickling_reply_is_cut_at_the_timeout():
    # A byte every 0.25 s never trips a per-read timeout; each attempt still ends at timeout_s.
    with FaultServer(faults=["trickle"] * 3, hang_s=6.0, trickle_s=0.25) as server:
        backend = _backend(server.url, timeout_s=1.0, max_retries=1)
        with pytest.raises(MaltError, match=r"no answer within backend.timeout_s=1.0s, 2 times"):
            backend.generate(
                "generator", [[{"role": "user", "content": "x"}]], SamplingParams(n=1), [0]
            )
    assert server.count("trickle") == 2  # the client's own retry, cut at the deadline too


def test_the_api_key_is_redacted_from_errors():
    with FaultServer(faults=["echo_auth"]) as server:
        with pytest.raises(MaltError, match="HTTP 401") as err:
            _backend(server.url).generate(
                "generator", [[{"role": "user", "content": "x"}]], SamplingParams(n=1), [0]
            )
    assert server.auth == ["Bearer " + SECRET]  # the server did see (and echo) the key
    text = str(err.value)
    assert SECRET not in text and "Bearer sk" not in text
    assert "rejected Bearer [redacted]; key [redacted] is revoked" in text


def test_redact_hides_the_key_and_any_bearer_token():
    assert redact(f"key={SECRET}, auth: Bearer {SECRET}", SECRET) == (
        "key=[redacted], auth: Bearer [redacted]"
    )
    assert redact("got 'Authorization: bearer abc.def-ghi'", None) == (
        "got 'Authorization: Bearer [redacted]'"
    )


@pytest.mark.parametrize(("field", "value", "why"), [
    ("max_concurrency", 0, "must be at least 1"),  # a zero-slot semaphore waits forever
    ("max_retries", -1, "must be at least 0"),
    ("timeout_s", 0.0, "must be a finite number > 0"),
])
def test_settings_that_would_hang_are_refused(field, value, why):
    with pytest.raises(MaltError, match=f"^{field}: {why}$"):
        _backend("http://127.0.0.1:9/v1", **{field: value})
    with pytest.raises(MaltError, match=f"^override backend.{field}={value}: backend.{field}: {why}$"):
        load_config(None, [f"backend.{field}={value}"])


def test_a_missing_key_for_the_hosted_api_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("MALT_TEST_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(MaltError, match="MALT_TEST_KEY is not set"):
        _backend(None)


def _stage_config(tmp_path, toy_data, url):
    """A toy generate run against the server at `url`, one retry, two-question chunks."""
    return load_config(None, [
        f"run_dir={tmp_path / 'run'}", "task.name=toy", f"task.train={toy_data}",
        "models.base=toy-model", "backend.name=openai", f"backend.base_url={url}",
        "backend.api_key_env=MALT_TEST_KEY", "backend.max_retries=1", "generate.chunk_size=2",
        *[f"generate.{r}.n=2" for r in ROLES],
    ])


def test_generate_stage_keeps_finished_shards_when_the_server_gives_up(
    gen_task, toy_data, tmp_path
):
    from malt.stages import generate

    with FaultServer(fail_after=14) as server:  # exactly the first chunk: 2 + 4 + 8 requests
        cfg = _stage_config(tmp_path, toy_data, server.url)
        with pytest.raises(MaltError, match="HTTP 500"):
            generate.run(cfg, progress=False)
        assert set(server.auth) == {"Bearer " + SECRET}  # the key travels only as the header
    out = tmp_path / "run" / "generate"
    assert [p.name for p in out.glob("trees-*.jsonl")] == ["trees-00000.jsonl"]
    for path in out.iterdir():
        assert SECRET not in path.read_text()
    with FaultServer() as server:  # the server is back: resume finishes the run
        summary = generate.run(_stage_config(tmp_path, toy_data, server.url), progress=False)
    assert summary["trees"] == 8 and summary["generated_now"]["generations"] == 3 * 28


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_model(tiny_model, tmp_path_factory):
    """`transformers serve` on loopback, serving a copy of the tiny model that samples."""
    pytest.importorskip("fastapi", reason="transformers serve needs its serving extras")
    pytest.importorskip("uvicorn", reason="transformers serve needs its serving extras")
    folder = tmp_path_factory.mktemp("served") / "tiny"
    shutil.copytree(tiny_model, folder)
    gen_cfg = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**gen_cfg, "do_sample": True}))
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    launcher = "import sys; from transformers.cli.transformers import main; sys.exit(main())"
    cmd = [
        sys.executable,
        "-c",
        launcher,
        "serve",
        str(folder),
        "--device",
        "cpu",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"transformers serve did not start: {proc.communicate()[1][-2000:]}")
        time.sleep(0.2)
    yield f"{url}/v1", str(folder)
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
def test_transformers_serve_produces_every_node(gen_task, served_model):
    url, model = served_model
    cfg = BackendConfig(
        name="openai",
        base_url=url,
        api_key_env="MALT_TEST_KEY",
        timeout_s=60,
        max_retries=2,
        max_concurrency=4,
    )
    backend = build_backend(cfg, {r: ModelSpec(model) for r in ROLES})
    trees, stats = sample_trees(gen_task, _problems(2), backend, _sampling(2, 6), run_seed=0)
    for tree in trees:
        check_shape(tree)
    nodes = [n for t in trees for n in t.nodes]
    assert len(nodes) == 2 * (2 + 4 + 8)
    assert backend.server_n is False  # transformers serve ignores n: requests were fanned out
    assert all(n.num_tokens <= 6 and n.finish_reason in ("stop", "length") for n in nodes)
    assert any(n.finish_reason == "length" and n.num_tokens == 6 for n in nodes)
    assert stats.total_tokens == sum(n.num_tokens for n in nodes)
