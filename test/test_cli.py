"""The vla-pruner command: info, bench, demo, and its error handling (exit 2, one line, no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vla_pruner_ros.cli import main


def test_info_on_real_openvla_metadata(shared_data, capsys):
    assert main(["info", str(shared_data / "openvla-7b"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] == 7_541_237_184 and info["tensors"] == info["tensors_in_index"] == 982
    assert info["visual_tokens"]["per_camera"] == 256
    assert "bridge_orig" in info["norm_stats_keys"] and info["action_head"]["action_dim"] == 7


def test_info_text_on_preset(capsys):
    assert main(["info", "small", "--head", "chunk"]) == 0
    out = capsys.readouterr().out
    assert "layers=32" in out and "per_camera=256" in out and "chunk_len=8" in out


def test_bench_writes_records(tmp_path, capsys):
    path = tmp_path / "bench.json"
    rc = main(["bench", "--model", "tiny", "--head", "chunk", "--methods", "none,random,fastv", "--keep", "1,0.25",
               "--ticks", "2", "--warmup", "1", "--layer", "2", "--quiet", "--json", str(path)])
    assert rc == 0
    data = json.loads(path.read_text())
    records = data["records"]
    assert [(r["method"], r["keep"]) for r in records] == [
        ("none", 1.0), ("random", 1.0), ("random", 0.25), ("fastv", 1.0), ("fastv", 0.25)]
    for r in records:
        assert {"median_ms", "speedup", "flops_ratio", "select_ms", "peak_mem_mb", "floor_ms"} <= set(r)
        assert r["median_ms"] > 0 and r["floor_ms"] > 0
    assert records[0]["speedup"] == 1.0 and records[2]["tokens_kept"] == 16 and records[2]["flops_ratio"] < 1
    assert records[0]["vs_random"] is None and records[2]["vs_random"] == 1.0  # random against itself
    fastv = records[4]
    assert fastv["vs_random"] == pytest.approx(records[2]["median_ms"] / fastv["median_ms"], abs=0.01)
    assert data["meta"]["attn_implementation"] == "sdpa_rows"  # transformers' SDPA plus the rows methods read
    assert "fastv" in capsys.readouterr().out


def test_demo_runs_every_method(capsys):
    assert main(["demo", "--model", "tiny", "--ticks", "2"]) == 0
    out = capsys.readouterr().out
    for method in ("none", "random", "fastv"):
        assert f"== {method}" in out
    assert "tokens   16/64" in out


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert "neither a checkpoint directory nor a preset" in capsys.readouterr().err
    assert main(["bench", "--model", "tiny", "--methods", "fastvv", "--quiet"]) == 2
    assert "unknown method(s) ['fastvv']" in capsys.readouterr().err
    assert main(["bench", "--model", "tiny", "--keep", "1.5", "--quiet"]) == 2
    assert "--keep 1.5 must be in (0, 1]" in capsys.readouterr().err
    (tmp_path / "config.json").write_text("{")
    assert main(["info", str(tmp_path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_console_entry_point_has_no_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "vla_pruner_ros.cli", "demo", "--model", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "neither a checkpoint" in out.stderr


def test_info_names_the_tensors_a_checkpoints_index_lacks(tmp_path, capsys):
    from conftest import tiny

    from vla_pruner_ros.model import save_checkpoint

    model, tokenizer = tiny("tokens")
    ckpt = save_checkpoint(model, tmp_path / "ckpt", tokenizer)
    assert main(["info", str(ckpt)]) == 0
    assert "tensors_missing" not in capsys.readouterr().out
    index_path = ckpt / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    dropped = sorted(index["weight_map"])[3]
    del index["weight_map"][dropped]
    index["weight_map"]["projector.extra.weight"] = next(iter(index["weight_map"].values()))
    index_path.write_text(json.dumps(index))
    assert main(["info", str(ckpt)]) == 1
    out, err = capsys.readouterr()
    assert f"1 missing from the index (and side files): {dropped}" in out
    assert "1 in the checkpoint files, not in the model: projector.extra.weight" in out
    assert "(1 missing, 1 unexpected); it will not load" in err
    assert main(["info", str(ckpt), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["tensors_missing"] == [dropped] and data["tensors_unexpected"] == ["projector.extra.weight"]


def test_bench_papers_dry_run_writes_every_suite(tmp_path, capsys):
    """The GPU benchmark's plumbing on the tiny presets and the CPU: every model shape, method and keep."""
    out = tmp_path / "papers"
    assert main(["bench-papers", "--model", "tiny", "--device", "cpu", "--dtype", "float32", "--ticks", "1",
                 "--warmup", "1", "--out", str(out), "--quiet"]) == 0
    tokens = json.loads((out / "openvla_tokens.json").read_text())
    chunk = json.loads((out / "oft.json").read_text())
    pi0 = json.loads((out / "pi0.json").read_text())
    assert tokens["meta"]["head"] == "tokens" and tokens["meta"]["num_cameras"] == 1
    assert chunk["meta"]["head"] == "oft" and chunk["meta"]["num_cameras"] == 2 and chunk["meta"]["proprio_dim"] == 8
    assert pi0["meta"]["head"] == "pi0" and pi0["meta"]["num_cameras"] == 3 and pi0["meta"]["model"] == "pi0-tiny"
    for data in (tokens, chunk, pi0):
        pairs = {(r["method"], r["keep"]) for r in data["records"]}
        assert pairs == {("none", 1.0)} | {(m, k) for m in ("random", "fastv", "divprune", "vla_pruner", "vla_iap",
                                                              "hybrid") for k in (1.0, 0.5, 0.25, 0.125)}
    md = (out / "bench_papers.md").read_text()
    assert md.count("| method | keep |") == 3 and "dry run on the tiny preset" in md and "236 -> 129 ms" in md
    assert "dry run on the pi0-tiny preset" in md and "1.73x at 25%" in md


def test_bench_papers_without_cuda_is_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = subprocess.run([sys.executable, "-m", "vla_pruner_ros.cli", "bench-papers"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f"vla-pruner bench-papers: error: --device cuda: CUDA is not available here (torch {torch.__version__}, "
        "torch.cuda.is_available() is False); this benchmark needs an NVIDIA GPU"]
