"""pi0 through transformers' own PI0: a directory written by ``save_pretrained`` loads, keep 1.0 is
``sample_actions`` with the same noise, the pruned forward equals an independent float64 reference, and
every method runs through the policy, the node, replay and bench."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from reference_pi0 import reference_sample
from safetensors.torch import load_file, save_file
from transformers import PI0ForConditionalGeneration, PI0Processor
from transformers.image_processing_backends import PilBackend
from transformers.models.pi0.image_processing_pi0 import PI0ImageProcessor

from vla_pruner_ros.model import CheckpointError, ConfigError, load_model
from vla_pruner_ros.model.interface import PruneSpec
from vla_pruner_ros.model.pi0 import build_pi0_preset
from vla_pruner_ros.policy import Observation, PolicyConfig, VLAPolicy
from vla_pruner_ros.pruning import build_pruner

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("none", "random", "fastv", "divprune", "vla_pruner", "vla_iap", "hybrid")
NAMES = tuple(f"a{i}" for i in range(7))
STATE_MEAN = [0.1, -0.2, 0.3, 0.0, 0.5, -0.5, 0.2, 0.04]
STATE_STD = [0.2, 0.1, 0.3, 1.0, 0.5, 0.25, 0.4, 0.02]
ACTION_MEAN = [0.01, -0.02, 0.03, 0.0, 0.1, -0.1, 0.5]
ACTION_STD = [0.05, 0.04, 0.03, 0.2, 0.1, 0.3, 0.5]


class PilPI0ImageProcessor(PilBackend):
    """transformers' PIL image backend with PI0ImageProcessor's settings (its torchvision backend is not
    installed here): the reference for our preprocessing."""


for _key in ("resample", "image_mean", "image_std", "size", "default_to_square", "do_resize", "do_rescale",
             "do_normalize", "do_convert_rgb", "image_seq_length", "pad_size", "do_pad"):
    setattr(PilPI0ImageProcessor, _key, getattr(PI0ImageProcessor, _key))


def _processor(tokenizer, image_size: int, tokens: int) -> PI0Processor:
    images = PilPI0ImageProcessor(size={"max_height": image_size, "max_width": image_size},
                                  pad_size={"height": image_size, "width": image_size}, image_seq_length=tokens)
    return PI0Processor(image_processor=images, tokenizer=tokenizer, state_mean=STATE_MEAN, state_std=STATE_STD,
                        actions_mean=ACTION_MEAN, actions_std=ACTION_STD)


def write_pi0_dir(path: Path, seed: int = 0) -> Path:
    """A pi0-tiny checkpoint as transformers writes one: the model's and the processor's save_pretrained."""
    model, tokenizer = build_pi0_preset("pi0-tiny", seed=seed)
    model.hf.save_pretrained(str(path))
    cfg = model.config
    _processor(tokenizer, cfg.image_size, cfg.tokens_per_camera).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def pi0_dir(tmp_path_factory) -> Path:
    return write_pi0_dir(tmp_path_factory.mktemp("pi0") / "ckpt")


def _frames(n: int, shape=(48, 64, 3), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


def _reference_model(path: Path) -> PI0ForConditionalGeneration:
    return PI0ForConditionalGeneration.from_pretrained(str(path), local_files_only=True).eval()


def _inputs(model, tokenizer, cams: int, instruction: str = "pick up the red cube"):
    pixels = model.preprocess(_frames(cams))
    ids = torch.tensor([model.prompt_ids(tokenizer, instruction)])
    return pixels, ids


@pytest.mark.parametrize("cams", [1, 2])
def test_keep_all_is_transformers_sample_actions_with_the_same_noise(pi0_dir, cams):
    model, tokenizer = load_model(pi0_dir, num_cameras=cams)
    reference = _reference_model(pi0_dir)
    pixels, ids = _inputs(model, tokenizer, cams)
    gen = torch.Generator().manual_seed(3)
    state = torch.randn(1, 32, generator=gen)
    noise = torch.randn(1, model.config.chunk_len, 32, generator=gen)
    ours = model.predict(pixels, ids, state, None, noise=noise).actions
    keep_all = PruneSpec(1, lambda s: torch.arange(s.layout.num_visual).unsqueeze(0), "last", 2)
    ours_kept = model.predict(pixels, ids, state, keep_all, noise=noise).actions
    theirs = reference.sample_actions(state=state, input_ids=ids, pixel_values=pixels, noise=noise,
                                      attention_mask=torch.ones_like(ids),
                                      pixel_attention_mask=torch.ones(1, cams, dtype=torch.bool))
    assert torch.equal(ours, theirs[:, :, :7])
    assert torch.equal(ours_kept, ours)
    # the wrapped model's own sampler still works (its mask builders know the row-capturing attention)
    wrapped = model.hf.sample_actions(state=state, input_ids=ids, pixel_values=pixels, noise=noise,
                                      attention_mask=torch.ones_like(ids),
                                      pixel_attention_mask=torch.ones(1, cams, dtype=torch.bool))
    assert torch.equal(wrapped, theirs)


def test_a_batch_and_bfloat16_are_transformers_sample_actions_too(pi0_dir):
    for dtype in (torch.float32, torch.bfloat16):
        model, tokenizer = load_model(pi0_dir, num_cameras=1, dtype=dtype)
        reference = PI0ForConditionalGeneration.from_pretrained(str(pi0_dir), local_files_only=True, dtype=dtype).eval()
        pixels = torch.cat([model.preprocess(_frames(1, seed=s)) for s in (1, 2)]).to(dtype)  # two samples
        ids = torch.tensor([model.prompt_ids(tokenizer, "pick up the red cube")] * 2)
        state, noise = torch.randn(2, 32).to(dtype), torch.randn(2, model.config.chunk_len, 32).to(dtype)
        ours = model.predict(pixels, ids, state, None, noise=noise).actions
        theirs = reference.sample_actions(state=state, input_ids=ids, pixel_values=pixels, noise=noise,
                                          attention_mask=torch.ones_like(ids),
                                          pixel_attention_mask=torch.ones(2, 1, dtype=torch.bool))
        assert torch.equal(ours, theirs[:, :, :7]), dtype
        assert not torch.equal(ours[0], ours[1])


@pytest.mark.parametrize("k", [0, 1, 3])
def test_pruned_forward_equals_the_independent_reference(pi0_dir, k):
    model, tokenizer = load_model(pi0_dir, num_cameras=2)
    pixels, ids = _inputs(model, tokenizer, 2)
    state, noise = torch.randn(1, 32), torch.randn(1, model.config.chunk_len, 32)
    keep = torch.tensor([[1, 4, 5, 9, 15, 16, 22, 30]])  # both cameras, unevenly
    pred = model.predict(pixels, ids, state, PruneSpec(k, lambda s: keep, "none", 2), noise=noise)
    with torch.no_grad():
        prefix = model.hf.model.embed_prefix(ids, pixels, torch.ones(1, 2, dtype=torch.bool))[0]
    actions, attention = reference_sample(model.hf, prefix, (0, 32), keep[0], k, state[0], noise[0],
                                          model.config.num_steps, action_layer=2)
    assert torch.allclose(pred.actions[0].double(), actions[:, :7], atol=2e-5), (pred.actions[0] - actions[:, :7])
    assert torch.allclose(pred.action_attention[0].double(), attention, atol=1e-7)
    pruned = ~torch.isin(torch.arange(32), keep[0])
    # the expert's layer 2 holds only the kept tokens when K <= 2, every token otherwise
    assert (float(pred.action_attention[0, pruned].abs().max()) == 0.0) == (k <= 2)
    assert pred.visual_keep.tolist() == keep.tolist()


def test_prompt_ids_and_pixels_are_what_pi0s_processor_gives(pi0_dir):
    model, tokenizer = load_model(pi0_dir, num_cameras=2)
    cfg = model.config
    frames = _frames(2, shape=(60, 90, 3))  # not square: resized to 56 x 37, then padded
    processor = _processor(tokenizer, cfg.image_size, cfg.tokens_per_camera)
    batch = processor(images=[frames], text="pick up the red cube", padding=False, return_tensors="pt")
    assert model.prompt_ids(tokenizer, "pick up the red cube") == batch["input_ids"][0].tolist()
    ours = model.preprocess(frames)
    assert ours.shape == batch["pixel_values"].shape
    assert torch.allclose(ours, batch["pixel_values"].float(), atol=1e-6)


def test_the_policy_normalises_state_and_unnormalises_actions_with_the_checkpoint_statistics(pi0_dir):
    model, tokenizer = load_model(pi0_dir, num_cameras=1)
    reference = _reference_model(pi0_dir)
    policy = VLAPolicy(model, tokenizer, build_pruner("none"), PolicyConfig(action_names=NAMES, seed=5))
    pose = np.array([0.3, 0.1, 0.4, 0.0, 1.0, 0.0, 0.0, 1.0])
    frames = _frames(1)
    chunk = policy.step(Observation(frames, "pick up the red cube", pose, 0.0))
    # PI0Processor's normalisation of the state, the same seeded noise, transformers' sampler
    processor = _processor(tokenizer, model.config.image_size, model.config.tokens_per_camera)
    batch = processor(images=[frames], text="pick up the red cube", state=[pose.tolist()], padding=False,
                      return_tensors="pt")
    noise = torch.randn(1, model.config.chunk_len, 32, generator=torch.Generator().manual_seed(5))
    sampled = reference.sample_actions(state=batch["state"], input_ids=batch["input_ids"],
                                       pixel_values=batch["pixel_values"].float(), noise=noise,
                                       attention_mask=batch["attention_mask"],
                                       pixel_attention_mask=batch["pixel_attention_mask"])
    expected = sampled[0, :, :7].double().numpy() * (np.array(ACTION_STD) + 1e-8) + np.array(ACTION_MEAN)
    assert chunk.actions.shape == (model.config.chunk_len, 7)
    np.testing.assert_allclose(chunk.actions, expected, atol=1e-5)
    # the generator is reseeded per episode: an episode replays identically
    policy.reset()
    again = policy.step(Observation(frames, "pick up the red cube", pose, 0.0))
    np.testing.assert_array_equal(again.actions, chunk.actions)
    second = policy.step(Observation(frames, "pick up the red cube", pose, 0.1))
    assert not np.allclose(second.actions, chunk.actions)  # fresh noise within the episode


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_on_pi0_at_its_budget(method):
    model, tokenizer = build_pi0_preset("pi0-tiny", num_cameras=2)
    params = {} if method == "none" else {"keep_ratio": 0.25}
    policy = VLAPolicy(model, tokenizer, build_pruner(method, **params), PolicyConfig(action_names=NAMES))
    frames = _frames(2)
    chunks = [policy.step(Observation(frames, "put the cube on the plate", np.zeros(8), float(t))) for t in range(3)]
    last = chunks[-1]
    assert last.actions.shape == (10, 7) and np.all(np.isfinite(last.actions))
    assert last.stats.tokens_total == [16, 16]
    assert last.stats.tokens_kept == ([16, 16] if method == "none" else [4, 4])
    assert (last.stats.llm_flops_ratio == 1.0) == (method == "none")
    policy.reset()
    again = policy.step(Observation(frames, "put the cube on the plate", np.zeros(8), 0.0))
    np.testing.assert_array_equal(again.actions, chunks[0].actions)


@pytest.mark.parametrize("method", METHODS[1:])
def test_keep_all_reproduces_the_unpruned_actions_for_every_method(pi0_dir, method):
    model, tokenizer = load_model(pi0_dir, num_cameras=2)
    frames = _frames(2)

    def run(name: str, **params) -> list[np.ndarray]:
        policy = VLAPolicy(model, tokenizer, build_pruner(name, **params), PolicyConfig(action_names=NAMES))
        return [policy.step(Observation(frames, "pick up the cube", np.full(8, 0.1), float(t))).actions
                for t in range(2)]

    for ours, unpruned in zip(run(method, keep_ratio=1.0), run("none"), strict=True):
        np.testing.assert_array_equal(ours, unpruned)


def test_vla_pruner_reads_the_experts_action_attention_averaged_over_steps(pi0_dir):
    model, tokenizer = load_model(pi0_dir, num_cameras=1)
    pruner = build_pruner("vla_pruner", keep_ratio=0.5, layer=1)
    policy = VLAPolicy(model, tokenizer, pruner, PolicyConfig(action_names=NAMES))
    policy.step(Observation(_frames(1), "pick up the red cube", np.zeros(8), 0.0))
    window = policy.state.cameras[0].attention  # what the method keeps for the next tick
    assert len(window) == 1 and window[0].shape == (16,)
    assert np.all(np.isfinite(window[0])) and window[0].sum() > 0


def test_a_tensor_missing_unexpected_or_misshaped_is_named(tmp_path):
    path = write_pi0_dir(tmp_path / "bad")
    weights = path / "model.safetensors"
    tensors = load_file(str(weights))
    del tensors["action_out_proj.bias"]
    tensors["extra.weight"] = torch.zeros(2)
    tensors["model.dit.norm.weight"] = torch.zeros(5)
    save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    text = str(err.value)
    assert all(name in text for name in ("action_out_proj.bias", "extra.weight", "model.dit.norm.weight")), text


@pytest.mark.parametrize("edit", ["missing", "unexpected"])
def test_missing_and_unexpected_tensors_are_refused(tmp_path, edit):
    path = write_pi0_dir(tmp_path / edit)
    weights = path / "model.safetensors"
    tensors = load_file(str(weights))
    if edit == "missing":
        del tensors["action_out_proj.bias"]
        name = "action_out_proj.bias"
    else:
        tensors["extra_head.weight"] = torch.zeros(2)
        name = "extra_head.weight"
    save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        load_model(path)


def test_the_experts_unused_token_embedding_may_be_left_out(tmp_path):
    """PI0 feeds its expert embeddings, never token ids: a checkpoint without that table (stored under
    LeRobot's name for it, the expert's lm_head) loads, and info calls it complete."""
    path = write_pi0_dir(tmp_path / "noembed")
    tensors = load_file(str(path / "model.safetensors"))
    del tensors["paligemma_with_expert.gemma_expert.lm_head.weight"]
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    model, _ = load_model(path)
    assert model.config.chunk_len == 10
    assert _cli("info", str(path)).returncode == 0


def test_lerobots_own_policy_format_and_float16_are_refused_with_the_fix(tmp_path, pi0_dir):
    raw = tmp_path / "lerobot"
    raw.mkdir()
    (raw / "config.json").write_text(json.dumps({"type": "pi0", "chunk_size": 50}))
    with pytest.raises(CheckpointError, match="LeRobot policy directory.*save_pretrained"):
        load_model(raw)
    out = _cli("info", str(raw))
    assert out.returncode != 0 and "LeRobot policy directory" in out.stderr and "Traceback" not in out.stderr
    with pytest.raises(ConfigError, match="bfloat16"):
        load_model(pi0_dir, dtype=torch.float16)


def test_statistics_are_required_and_read_from_lerobots_normaliser(tmp_path):
    path = write_pi0_dir(tmp_path / "nostats")
    (path / "processor_config.json").unlink()
    with pytest.raises(CheckpointError, match="state_mean.*normalizer"):
        load_model(path)
    save_file({"observation.state.mean": torch.tensor(STATE_MEAN), "observation.state.std": torch.tensor(STATE_STD),
               "action.mean": torch.tensor(ACTION_MEAN), "action.std": torch.tensor(ACTION_STD)},
              str(path / "policy_preprocessor_step_3_normalizer_processor.safetensors"))
    model, _ = load_model(path)
    stats = model.config.norm_stats["default"]
    assert np.allclose(stats["action"]["std"], ACTION_STD) and np.allclose(stats["proprio"]["mean"], STATE_MEAN)
    assert (model.config.action_dim, model.config.proprio_dim) == (7, 8)


def test_a_head_or_chunk_length_that_does_not_apply_is_refused(pi0_dir):
    with pytest.raises(ConfigError, match="head='tokens'"):
        load_model(pi0_dir, head="tokens")
    with pytest.raises(ConfigError, match="chunk_size=10"):
        load_model(pi0_dir, chunk_len=8)


def test_the_published_sizes_lay_out_on_the_meta_device():
    model, _ = build_pi0_preset("pi0", num_cameras=3, device="meta")
    cfg = model.config
    assert (cfg.num_layers, cfg.tokens_per_camera, cfg.num_visual_tokens, cfg.chunk_len, cfg.num_steps) == \
        (18, 256, 768, 50, 10)
    n = sum(p.numel() for p in model.hf.parameters())
    assert 3.0e9 < n < 4.0e9, n  # PaliGemma 3B + the 300M expert
    # FLOPs counted by hand from the published sizes (PaliGemma's Gemma 2048 wide, MLP 16384; the expert 1024,
    # MLP 4096; both 8 query heads and 1 key/value head of 256), 20 prompt ids, 192 of 768 visual tokens kept
    # after K = 2, 10 steps over the state row and 50 action rows
    def layer(n, s, d, m):
        return n * d * 8 * 256 * 2 + n * d * 256 * 2 + 2 * n * s * 8 * 256 + 3 * n * d * m

    t, kept = 788, 788 - 768 + 192
    expected = 2 * layer(t, t, 2048, 16384) + 16 * layer(kept, kept, 2048, 16384) + \
        10 * (2 * layer(51, t + 51, 1024, 4096) + 16 * layer(51, kept + 51, 1024, 4096))
    full = 18 * layer(t, t, 2048, 16384) + 10 * 18 * layer(51, t + 51, 1024, 4096)
    assert model.tick_flops(t, 192, 2) == (expected, full)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vla_pruner_ros.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def test_info_describes_a_pi0_directory(pi0_dir, tmp_path):
    out = _cli("info", str(pi0_dir), "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["architecture"].startswith("pi0")
    assert info["visual_tokens"]["per_camera"] == 16 and info["action_expert"]["chunk_len"] == 10
    assert info["tensors_missing"] == [] and info["tensors_unexpected"] == []
    bad = write_pi0_dir(tmp_path / "bad")
    tensors = load_file(str(bad / "model.safetensors"))
    del tensors["action_out_proj.bias"]
    save_file(tensors, str(bad / "model.safetensors"), metadata={"format": "pt"})
    out = _cli("info", str(bad))
    assert out.returncode == 1 and "action_out_proj.bias" in out.stdout


def test_bench_runs_every_method_on_pi0_tiny(tmp_path):
    out = tmp_path / "bench.json"
    res = _cli("bench", "--model", "pi0-tiny", "--methods", ",".join(METHODS), "--keep", "0.5", "--ticks", "2",
               "--warmup", "1", "--cameras", "2", "--json", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    records = json.loads(out.read_text())["records"]
    assert {r["method"] for r in records} == set(METHODS)
    assert all(r["tokens_kept"] == (32 if r["method"] == "none" else 16) for r in records)


def test_replay_compares_methods_on_a_pi0_directory(pi0_dir, tmp_path):
    pytest.importorskip("mujoco", reason="the 'sim' extra (mujoco) is not installed")
    from vla_pruner_ros.cli import main

    bags = tmp_path / "bags"
    assert main(["sim", "record", "--task", "pick", "--episodes", "1", "--out", str(bags), "--wrist", "--quiet"]) == 0
    report = tmp_path / "r.json"
    assert main(["replay", str(next(bags.iterdir())), "--model", str(pi0_dir), "--compare", ",".join(METHODS[1:]),
                 "--keep", "0.25", "--report", str(report), "--quiet"]) == 0
    methods = json.loads(report.read_text())["methods"]
    assert sorted(methods) == sorted(METHODS)
    assert methods["none"]["visual_tokens_kept"]["of"] == 32  # both of the bag's cameras
    for name in METHODS[1:]:  # each at its budget, on every chunk
        assert methods[name]["chunks"] >= 2 and methods[name]["effective_keep"] == 0.25, (name, methods[name])


@pytest.mark.parametrize("method", METHODS)
def test_the_node_drives_a_pi0_directory_from_two_cameras_and_the_pose(pi0_dir, method):
    """The real node process with a robot's shipped file and the directory as model.path: both cameras and
    the pose topic (as the state) give pi0's 10-step chunks, with every method."""
    pytest.importorskip("rclpy", reason="the ROS 2 wheels (the 'ros' extra) are not installed")
    from node_process import Tester, interrupt, start
    from std_msgs.msg import String

    proc = start(["--ros-args", "--params-file", "config/franka.yaml", "-p", f"model.path:={pi0_dir}",
                  "-p", f"pruning.method:={method}", "-p", "pruning.keep_ratio:=0.5"])
    t = Tester()
    try:
        t.instruction_pub.publish(String(data="put the bowl on the plate"))
        ok = t.feed_until(lambda: len(t.chunks) >= 2 or proc.poll() is not None, 90.0)
        assert ok and proc.poll() is None, interrupt(proc)[1][-3000:]
        assert len(t.chunks[0][1].points) == 10
    finally:
        t.close()
        rc, out = interrupt(proc)
    assert rc == 0 and "Traceback" not in out, out[-3000:]
    assert "head=pi0 cameras=2" in out
