"""bench/gpu_check.py: without CUDA it measures nothing and exits 0; on a GPU a tiny part runs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import REPO

torch = pytest.importorskip("torch")

SCRIPT = REPO / "bench" / "gpu_check.py"
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 512}


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_prints_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no device, even on a GPU machine
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "no CUDA device: nothing measured\n"
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_tiny_gpu_path_measures_generation_and_training(tmp_path):
    from malt.embedded import base_model_path

    check = load_script()
    prompts = check.prompts_by_role(4)
    assert all(len(chats) == 4 for chats in prompts.values())
    gen = check.measure_generation(base_model_path(), prompts, n=2, max_new_tokens=16,
                                   batch_size=16)
    assert gen["sequences"] == 3 * 4 * 2 and gen["new_tokens"] > 0
    assert gen["tokens_per_s"] > 0 and gen["peak_gpu_memory_mib"] > 0
    model = check.build_llama(tmp_path / "llama", TINY)
    train = check.measure_training(model, tmp_path / "train", sft_rows=16, dpo_pairs=8,
                                   batch_size=8)
    for phase, steps in (("sft", 2), ("dpo", 1)):
        assert train[phase]["status"] == "trained" and train[phase]["steps"] == steps
        assert train[phase]["tokens_per_s"] > 0 and train[phase]["peak_gpu_memory_mib"] > 0
