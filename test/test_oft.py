"""OpenVLA-OFT checkpoints as published: the directory layout (VLM shards + ``action_head--*`` and
``proprio_projector--*`` state dicts with DDP's ``module.`` prefix + ``dataset_statistics.json``), checked
against a reference forward written here from OFT's published code (moojink/openvla-oft:
``predict_action``, ``L1RegressionActionHead``, ``ProprioProjector``, ``normalize_proprio``,
``_unnormalize_actions``; its transformers fork's bidirectional attention), sharing no code with the
model package except the vision towers and projector (checked against OpenVLA's own code elsewhere)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SHARED_DATA, tiny
from PIL import Image
from reference_llama import ReferenceLlama

from vla_pruner_ros.model import CheckpointError, load_model, save_checkpoint
from vla_pruner_ros.model.interface import PruneSpec
from vla_pruner_ros.model.vision import preprocess_images
from vla_pruner_ros.policy import Observation, PolicyConfig, VLAPolicy
from vla_pruner_ros.pruning import build_pruner

STATS = SHARED_DATA / "openvla-7b-oft-libero10" / "dataset_statistics.json"
KEY = "libero_10_no_noops"
CHUNK, ACTION_DIM, PROPRIO_DIM = 8, 7, 8  # OFT's LIBERO constants
SUFFIX = 10  # stands in for Llama's empty token 29871 (OpenVLA's config gives it; the tiny vocabulary is small)


def _statistics() -> dict:
    if STATS.exists():
        return json.loads(STATS.read_text())
    rng = np.random.default_rng(0)  # the same structure, for a machine without the shared data
    low = rng.uniform(-1, 0, 8)
    return {KEY: {"action": {"q01": low[:7].tolist(), "q99": (low[:7] + 1).tolist(),
                             "min": (low[:7] - 0.1).tolist(), "max": (low[:7] + 1.1).tolist(),
                             "mask": [True] * 6 + [False]},
                  "proprio": {"q01": low.tolist(), "q99": (low + 2).tolist(), "min": low.tolist(),
                              "max": (low + 2).tolist()}}}


def _head_state(d: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """OFT's action head state dict as torch.save'd after DDP training: its names, random values."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.1  # noqa: E731
    i = d * ACTION_DIM
    state = {"model.layer_norm1.weight": 1 + r(i), "model.layer_norm1.bias": r(i),
             "model.fc1.weight": r(d, i), "model.fc1.bias": r(d)}
    for b in range(2):
        block = f"model.mlp_resnet_blocks.{b}.ffn"
        state |= {f"{block}.0.weight": 1 + r(d), f"{block}.0.bias": r(d),  # LayerNorm
                  f"{block}.1.weight": r(d, d), f"{block}.1.bias": r(d)}  # Linear
    state |= {"model.layer_norm2.weight": 1 + r(d), "model.layer_norm2.bias": r(d),
              "model.fc2.weight": r(ACTION_DIM, d), "model.fc2.bias": r(ACTION_DIM)}
    return {f"module.{k}": v for k, v in state.items()}


def _proprio_state(d: int, seed: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"module.fc1.weight": torch.randn(d, PROPRIO_DIM, generator=g) * 0.3,
            "module.fc1.bias": torch.randn(d, generator=g) * 0.1,
            "module.fc2.weight": torch.randn(d, d, generator=g) * 0.1,
            "module.fc2.bias": torch.randn(d, generator=g) * 0.1}


def write_oft_dir(path: Path, head: dict | None = None, proprio: dict | None = None) -> Path:
    """A tiny VLM saved as OpenVLA's shards, with OFT's side files under their published names."""
    vlm, tokenizer = tiny("tokens", 1)
    save_checkpoint(vlm, path, tokenizer)
    config = json.loads((path / "config.json").read_text())
    config["vla_pruner"]["prompt_suffix_token_id"] = SUFFIX
    (path / "config.json").write_text(json.dumps(config))
    d = vlm.config.llm_dim
    torch.save(head if head is not None else _head_state(d), path / "action_head--150000_checkpoint.pt")
    torch.save(proprio if proprio is not None else _proprio_state(d), path / "proprio_projector--150000_checkpoint.pt")
    (path / "dataset_statistics.json").write_text(json.dumps(_statistics()))
    return path


@pytest.fixture
def oft_dir(tmp_path) -> Path:
    return write_oft_dir(tmp_path / "oft")


def tf_center_crop(image: np.ndarray, crop_scale: float = 0.9) -> np.ndarray:
    """OFT's center_crop_image, from TensorFlow's documented semantics, pixel by pixel in float32 as TF
    computes: convert_image_dtype (x 1/255), crop_and_resize of the central sqrt(scale) box back to the same
    size (height_scale = (y2 - y1)(H - 1) / (h - 1), in_y = y1 (H - 1) + y height_scale, top/bottom =
    floor/ceil, top + (bottom - top) * lerp), clip, convert back (x 255.5, truncate, saturate)."""
    f = np.float32
    h, w, _ = image.shape
    side = min(max(np.sqrt(f(crop_scale)), f(0)), f(1))
    y1 = x1 = (f(1) - side) / f(2)
    y2 = x2 = y1 + side
    height_scale = (y2 - y1) * f(h - 1) / f(h - 1)
    width_scale = (x2 - x1) * f(w - 1) / f(w - 1)
    img = image.astype(f) * f(1.0 / 255.0)
    out = np.zeros((h, w, 3), dtype=np.uint8)
    for y in range(h):
        in_y = y1 * f(h - 1) + f(y) * height_scale
        top, bottom = int(np.floor(in_y)), int(np.ceil(in_y))
        y_lerp = in_y - np.floor(in_y)
        for x in range(w):
            in_x = x1 * f(w - 1) + f(x) * width_scale
            left, right = int(np.floor(in_x)), int(np.ceil(in_x))
            x_lerp = in_x - np.floor(in_x)
            for c in range(3):
                t = img[top, left, c] + (img[top, right, c] - img[top, left, c]) * x_lerp
                b = img[bottom, left, c] + (img[bottom, right, c] - img[bottom, left, c]) * x_lerp
                value = min(max(t + (b - t) * y_lerp, f(0)), f(1))
                out[y, x, c] = np.uint8(min(max(value * f(255.5), f(0)), f(255)))
    return out


def _layer_norm(x, state, name):
    return F.layer_norm(x, x.shape[-1:], state[f"module.{name}.weight"].double(), state[f"module.{name}.bias"].double())


def _linear(x, state, name):
    return x @ state[f"module.{name}.weight"].double().T + state[f"module.{name}.bias"].double()


@torch.no_grad()
def reference_actions(model, path: Path, images, instruction_ids: torch.Tensor, proprio: np.ndarray,
                      keep: torch.Tensor | None = None, k: int = 0, attention_layer: int | None = None):
    """OFT's predict_action, written from its published code in float64; ``keep`` (visual indices)
    prunes before layer ``k`` the way the pruned model must: kept rows keep their positions. With
    ``attention_layer`` also returns the head-averaged attention of the rows the head reads to each visual
    token at that layer (unpruned), averaged over those rows."""
    head = torch.load(path / "action_head--150000_checkpoint.pt", weights_only=True)
    proj = torch.load(path / "proprio_projector--150000_checkpoint.pt", weights_only=True)
    stats = json.loads((path / "dataset_statistics.json").read_text())[KEY]
    cfg = model.config
    # normalize_proprio (bounds_q99): clip(where(mask, 2 (p - q01) / (q99 - q01 + 1e-8) - 1, p), -1, 1)
    low, high = np.array(stats["proprio"]["q01"]), np.array(stats["proprio"]["q99"])
    mask = np.array(stats["proprio"].get("mask", [True] * len(low)))
    p = np.clip(np.where(mask, 2 * (proprio - low) / (high - low + 1e-8) - 1, proprio), -1, 1)
    p = torch.from_numpy(p).float().double()  # OFT hands the projector a float tensor
    proprio_token = _linear(F.gelu(_linear(p, proj, "fc1")), proj, "fc2")
    # the processor's resize (checked against OpenVLA's elsewhere), then OFT's centre crop, written here
    size = cfg.image_size
    cropped = [tf_center_crop(np.array(Image.fromarray(im).resize((size, size), Image.Resampling.BICUBIC)))
               for im in images]
    px = preprocess_images(cropped, cfg.replace(center_crop=1.0)).unsqueeze(0)  # primary image first, then wrist
    visual = model.encode_images(px)[0].double()
    embed = model.language_model.model.embed_tokens.weight.double()
    ids = instruction_ids[0]
    n_patches = visual.shape[0] + 1  # NUM_PATCHES: every image's patches, plus the proprio token
    n_prompt = len(ids) - 1  # NUM_PROMPT_TOKENS: the prompt without BOS
    seq = torch.cat([embed[ids[:1]], visual, proprio_token[None], embed[ids[1:]],
                     torch.zeros(CHUNK * ACTION_DIM, embed.shape[1], dtype=torch.float64),  # zeroed placeholders
                     embed[torch.tensor([2])]])  # the stop token '</s>'
    ref = ReferenceLlama(model.language_model)
    n = seq.shape[0]
    positions = torch.arange(n)
    h = seq
    read = slice(n_patches + n_prompt, n_patches + n_prompt + CHUNK * ACTION_DIM)
    attention = None
    for i in range(len(ref.layers)):
        if keep is not None and i == k:
            rows = torch.cat([torch.tensor([0]), keep + 1, torch.arange(1 + visual.shape[0], n)])
            h, positions = h[rows], positions[rows]
        everything = torch.ones(len(positions), len(positions), dtype=torch.bool)
        if i == attention_layer:
            probs = ref.attention_probs(i, h, positions, everything).mean(0)  # (T, T), heads averaged
            attention = probs[read, 1:1 + visual.shape[0]].mean(0).numpy()
        h = ref.layer(i, h, positions, everything)
    last = ref.norm(h)
    start = int(torch.nonzero(positions == n_patches + n_prompt)[0])  # OFT: hidden_states[NUM_PATCHES + NUM_PROMPT..]
    rows = last[start:start + CHUNK * ACTION_DIM].reshape(CHUNK, -1)  # (chunk, action_dim * d)
    x = torch.relu(_linear(_layer_norm(rows, head, "model.layer_norm1"), head, "model.fc1"))
    for b in range(2):
        y = _layer_norm(x, head, f"model.mlp_resnet_blocks.{b}.ffn.0")
        x = x + torch.relu(_linear(y, head, f"model.mlp_resnet_blocks.{b}.ffn.1"))
    normalized = _linear(_layer_norm(x, head, "model.layer_norm2"), head, "model.fc2").numpy()
    # _unnormalize_actions (bounds_q99): where(mask, 0.5 (x + 1)(q99 - q01 + 1e-8) + q01, x)
    a_low, a_high = np.array(stats["action"]["q01"]), np.array(stats["action"]["q99"])
    a_mask = np.array(stats["action"].get("mask", [True] * len(a_low)))
    actions = np.where(a_mask, 0.5 * (normalized + 1) * (a_high - a_low + 1e-8) + a_low, normalized)
    return actions if attention_layer is None else (actions, attention)


def oft_prompt_ids(tokenizer, instruction: str) -> torch.Tensor:
    """As OFT's get_vla_action and predict_action build them: the processor's tokens of the prompt with the
    task lower-cased, then the empty token appended unless it already ends the prompt."""
    ids = list(tokenizer(f"In: What action should the robot take to {instruction.lower()}?\nOut:")["input_ids"])
    if ids[0] != tokenizer.bos_token_id:
        ids.insert(0, tokenizer.bos_token_id)
    if ids[-1] != SUFFIX:
        ids.append(SUFFIX)
    return torch.tensor([ids])


def _observation(seed: int = 0) -> Observation:
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(2)]  # third-person, wrist
    return Observation(images, "Put both the alphabet soup and the tomato sauce in the basket.",
                       rng.normal(0, 0.5, PROPRIO_DIM), 0.0)


def test_published_layout_loads_with_the_platform_constants(oft_dir):
    model, _ = load_model(oft_dir)
    cfg = model.config
    assert (cfg.head, cfg.chunk_len, cfg.action_dim, cfg.proprio_dim, cfg.num_cameras) == ("oft", 8, 7, 8, 2)
    assert cfg.center_crop == 0.9  # OFT evaluates on the central 90% of the area
    assert cfg.norm_type == "bounds_q99" and sorted(cfg.norm_stats) == [KEY]  # dataset_statistics.json wins
    head = torch.load(oft_dir / "action_head--150000_checkpoint.pt", weights_only=True)
    assert torch.equal(model.action_head.model.fc1.weight, head["module.model.fc1.weight"])


def test_center_crop_is_tensorflows_crop_and_resize():
    from vla_pruner_ros.model.vision import center_crop

    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)
    ours = center_crop(image, 0.9)
    assert np.array_equal(ours, tf_center_crop(image))
    assert np.abs(ours.astype(int) - image.astype(int)).mean() > 10  # it does crop


def test_actions_equal_the_reference_forward(oft_dir):
    model, tokenizer = load_model(oft_dir)
    policy = VLAPolicy(model, tokenizer, build_pruner("none"), PolicyConfig(unnorm_key=KEY))
    obs = _observation()
    chunk = policy.step(obs)
    ids = oft_prompt_ids(tokenizer, obs.instruction)
    assert ids[0, -1] == SUFFIX
    expected = reference_actions(model, oft_dir, obs.images, ids, obs.proprio)
    assert chunk.actions.shape == (CHUNK, ACTION_DIM)
    np.testing.assert_allclose(chunk.actions, expected, atol=2e-5, rtol=0)
    # the reference sees every change: other proprio, other images give other actions
    other = reference_actions(model, oft_dir, obs.images, ids, obs.proprio + 0.5)
    assert np.abs(other - expected).max() > 1e-3


def test_pruned_forward_equals_the_reference_with_the_same_tokens(oft_dir):
    model, tokenizer = load_model(oft_dir)
    policy = VLAPolicy(model, tokenizer, build_pruner("none"), PolicyConfig(unnorm_key=KEY))
    obs = _observation(1)
    policy.step(obs)  # sets the prompt
    ids = policy._input_ids
    m = model.config.num_visual_tokens
    keep = torch.sort(torch.randperm(m, generator=torch.Generator().manual_seed(3))[: m // 4]).values
    px = preprocess_images(obs.images, model.config).unsqueeze(0)
    with torch.no_grad():
        pred = model.predict(px, ids, policy._proprio_tensor(obs.proprio), PruneSpec(2, lambda _s: keep[None]))
    got = policy.normalizer.unnormalize(pred.actions[0].double().numpy())
    expected = reference_actions(model, oft_dir, obs.images, ids, obs.proprio, keep=keep, k=2)
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=0)


def test_action_attention_comes_from_the_rows_the_head_reads(oft_dir):
    """VLA-Pruner's action queries on OFT: the rows the head decodes from (the last prompt row and the first
    chunk * action_dim - 1 placeholders), as the reference computes their attention."""
    model, tokenizer = load_model(oft_dir)
    policy = VLAPolicy(model, tokenizer, build_pruner("none"), PolicyConfig(unnorm_key=KEY))
    obs = _observation(4)
    policy.step(obs)
    px = preprocess_images(obs.images, model.config).unsqueeze(0)
    everything = torch.arange(model.config.num_visual_tokens)[None]
    with torch.no_grad():
        pred = model.predict(px, policy._input_ids, policy._proprio_tensor(obs.proprio),
                             PruneSpec(1, lambda _s: everything, action_layer=2))
    _, expected = reference_actions(model, oft_dir, obs.images, policy._input_ids, obs.proprio, attention_layer=2)
    # float32 against float64 differ by ~1e-9; the placeholder rows instead of the read rows by ~2e-6
    np.testing.assert_allclose(pred.action_attention[0].double().numpy(), expected, atol=2e-8, rtol=0)


def test_a_directory_without_statistics_does_not_guess_its_platform(tmp_path):
    """config.json's norm_stats are the base model's pretraining mixture (they name bridge_orig): a LIBERO
    head must not be read as Bridge's from them."""
    path = write_oft_dir(tmp_path / "oft")
    (path / "dataset_statistics.json").unlink()
    with pytest.raises(CheckpointError, match="no dataset_statistics.json.*model.chunk_len"):
        load_model(path)


def test_unnorm_key_without_no_noops_suffix_is_found_as_oft_does(oft_dir):
    model, tokenizer = load_model(oft_dir)
    assert VLAPolicy(model, tokenizer, config=PolicyConfig(unnorm_key="libero_10")).normalizer.key == KEY


@pytest.mark.parametrize("method", ["random", "fastv", "divprune", "vla_pruner", "vla_iap", "hybrid"])
def test_keep_all_reproduces_the_unpruned_actions_exactly(oft_dir, method):
    model, tokenizer = load_model(oft_dir)
    obs = _observation(2)
    plain = VLAPolicy(model, tokenizer, build_pruner("none"), PolicyConfig(unnorm_key=KEY)).step(obs)
    pruned = VLAPolicy(model, tokenizer, build_pruner(method, keep_ratio=1.0), PolicyConfig(unnorm_key=KEY)).step(obs)
    assert sum(pruned.stats.tokens_kept) == model.config.num_visual_tokens
    assert np.array_equal(plain.actions, pruned.actions)


def test_pruning_keeps_each_cameras_budget_and_records_the_action_rows(oft_dir):
    model, tokenizer = load_model(oft_dir)
    policy = VLAPolicy(model, tokenizer, build_pruner("vla_pruner", keep_ratio=0.25), PolicyConfig(unnorm_key=KEY))
    for seed in range(3):
        chunk = policy.step(_observation(seed))
        per_cam = model.config.tokens_per_camera
        assert chunk.stats.tokens_kept == [per_cam // 4, per_cam // 4]
    cams = policy.state.cameras  # the action rows' attention, one history per camera
    assert len(cams) == 2 and all(len(c.attention) == 3 for c in cams)
    assert all(np.isfinite(a).all() and a.sum() > 0 for c in cams for a in c.attention)


def test_missing_or_misshaped_head_tensor_is_named(tmp_path):
    d = 64  # the tiny preset's LLM width
    head = _head_state(d)
    del head["module.model.fc2.bias"]
    with pytest.raises(CheckpointError, match=r"missing 1 tensor\(s\): 'action_head\.model\.fc2\.bias'"):
        load_model(write_oft_dir(tmp_path / "a", head=head))
    head = _head_state(d)
    head["module.model.layer_norm1.weight"] = torch.ones(d * ACTION_DIM + 1)
    with pytest.raises(CheckpointError, match=r"'action_head\.model\.layer_norm1\.weight' has shape \(449,\)"):
        load_model(write_oft_dir(tmp_path / "b", head=head))


class _NotATensor:  # pickled into a side file: a weights_only load must refuse it
    def __reduce__(self):
        return (print, ("an unrestricted unpickle ran this",))


def test_side_files_are_never_unpickled_unrestricted(tmp_path):
    path = write_oft_dir(tmp_path / "oft")
    torch.save({"module.model.fc1.weight": _NotATensor()}, path / "action_head--150000_checkpoint.pt")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_model(path)


def test_unknown_platform_asks_for_chunk_length_and_cameras(tmp_path):
    path = write_oft_dir(tmp_path / "oft")
    stats = _statistics()
    (path / "dataset_statistics.json").write_text(json.dumps({"my_lab_robot": stats[KEY]}))
    with pytest.raises(CheckpointError, match="chunk_len and num_cameras"):
        load_model(path)
    from vla_pruner_ros.factory import load_settings_model
    from vla_pruner_ros.settings import settings_from_flat

    model, _ = load_settings_model(settings_from_flat({"model.path": str(path), "model.chunk_len": 4,
                                                       "model.num_cameras": 1}))
    assert (model.config.chunk_len, model.config.num_cameras) == (4, 1)


def _info(path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vla_pruner_ros.cli", "info", str(path), *extra],
                          capture_output=True, text=True, timeout=120)


def test_info_reports_an_oft_directory(oft_dir):
    out = _info(oft_dir, "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["action_head"]["type"].startswith("oft")
    assert (info["action_head"]["chunk_len"], info["visual_tokens"]["cameras"]) == (8, 2)
    assert info["norm_stats_keys"] == [KEY] and info["tensors_missing"] == []


def test_info_names_head_tensors_the_side_file_lacks(tmp_path):
    head = _head_state(64)
    del head["module.model.mlp_resnet_blocks.1.ffn.1.weight"]
    out = _info(write_oft_dir(tmp_path / "oft", head=head))
    assert out.returncode == 1
    assert "action_head.model.mlp_resnet_blocks.1.ffn.1.weight" in out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_real_oft_config_and_statistics_parse(shared_data, tmp_path):
    """The published libero-10 config.json, index and dataset_statistics.json, with head files at the
    published names: the platform and statistics are found; the 7B head's shapes are read from the files."""
    src = shared_data / "openvla-7b-oft-libero10"
    path = tmp_path / "oft10"
    shutil.copytree(src, path)
    d = 4096
    big = lambda *shape: torch.zeros(1, dtype=torch.bfloat16).expand(*shape)  # noqa: E731 (the shape, 2 bytes stored)
    torch.save({"module.model.fc1.weight": big(d, d * ACTION_DIM), "module.model.fc2.weight": big(ACTION_DIM, d)},
               path / "action_head--150000_checkpoint.pt")
    torch.save({"module.fc1.weight": big(d, PROPRIO_DIM)}, path / "proprio_projector--150000_checkpoint.pt")
    from vla_pruner_ros.model import VLAConfig
    cfg = VLAConfig.from_dir(path)
    assert (cfg.head, cfg.chunk_len, cfg.action_dim, cfg.proprio_dim, cfg.num_cameras) == ("oft", 8, 7, 8, 2)
    assert cfg.num_visual_tokens == 512 and sorted(cfg.norm_stats) == [KEY]
    out = _info(path)
    assert out.returncode == 1 and "action_head.model.layer_norm1.weight" in out.stdout


def test_the_node_drives_an_oft_directory_from_two_cameras_and_the_pose(tmp_path):
    """The real node process with a robot's shipped file and the directory as model.path: both cameras
    and the pose topic (as proprio) give OFT's 8-step chunks."""
    pytest.importorskip("rclpy", reason="the ROS 2 wheels (the 'ros' extra) are not installed")
    from node_process import Tester, interrupt, start
    from std_msgs.msg import String

    path = write_oft_dir(tmp_path / "oft")
    proc = start(["--ros-args", "--params-file", "config/franka.yaml", "-p", f"model.path:={path}"])
    t = Tester()
    try:
        t.instruction_pub.publish(String(data="put the bowl on the plate"))
        ok = t.feed_until(lambda: len(t.chunks) >= 2 or proc.poll() is not None, 90.0)
        assert ok and proc.poll() is None, interrupt(proc)[1][-3000:]
        assert len(t.chunks[0][1].points) == CHUNK
    finally:
        t.close()
        rc, out = interrupt(proc)
    assert rc == 0 and "Traceback" not in out, out[-3000:]
    assert "head=oft cameras=2" in out


def test_eval_and_replay_take_an_oft_directory(tmp_path):
    pytest.importorskip("mujoco", reason="the 'sim' extra (mujoco) is not installed")
    from vla_pruner_ros.cli import main

    path = str(write_oft_dir(tmp_path / "oft"))
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", path, "--methods", "none,vla_pruner", "--keep", "0.5", "--episodes", "1",
                 "--families", "pick", "--json", str(out), "--quiet"]) == 0
    assert [r["tokens_kept"] for r in json.loads(out.read_text())["rows"]] == [2 * 64, 2 * 32]
    bags = tmp_path / "bags"
    assert main(["sim", "record", "--task", "pick", "--episodes", "1", "--out", str(bags), "--wrist", "--quiet"]) == 0
    report = tmp_path / "r.json"
    assert main(["replay", str(next(bags.iterdir())), "--model", path, "--compare", "fastv", "--keep", "0.25",
                 "--report", str(report), "--quiet"]) == 0
    assert json.loads(report.read_text())["methods"]["fastv"]["chunks"] >= 2


def test_aloha_statistics_use_min_max_as_ofts_bounds_normalisation():
    """OFT's ALOHA constants normalise with min/max ('bounds'), LIBERO's with q01/q99: the same formulas."""
    from vla_pruner_ros.model.actions import ActionNormalizer, normalize_masked, stat_bounds

    stats = {"aloha_towel": {"action": {"min": [-2.0, 0.0], "max": [2.0, 1.0], "q01": [-1.0, 0.2], "q99": [1.0, 0.8],
                                        "mask": [True, False]},
                             "proprio": {"min": [0.0, -1.0], "max": [4.0, 1.0], "q01": [1.0, 0.0], "q99": [3.0, 0.5]}}}
    x = np.array([0.5, 0.3])
    bounds = ActionNormalizer(stats, None, 2, "bounds", 1e-8).unnormalize(x)
    np.testing.assert_allclose(bounds, [0.5 * 1.5 * (4.0 + 1e-8) - 2.0, 0.3])  # masked-out dims pass through
    q99 = ActionNormalizer(stats, None, 2, "bounds_q99", 1e-8).unnormalize(x)
    np.testing.assert_allclose(q99, [0.5 * 1.5 * (2.0 + 1e-8) - 1.0, 0.3])
    low, high, mask = stat_bounds(stats["aloha_towel"]["proprio"], "bounds", "proprio")
    np.testing.assert_allclose(normalize_masked(np.array([5.0, 0.0]), low, high, mask, 1e-8),
                               [1.0, 2 * 1.0 / (2.0 + 1e-8) - 1])  # clipped to 1; the mask defaults to all


def test_a_directory_without_proprio_projector_needs_no_proprio(tmp_path):
    path = write_oft_dir(tmp_path / "oft")
    (path / "proprio_projector--150000_checkpoint.pt").unlink()
    model, tokenizer = load_model(path)
    assert model.config.proprio_dim == 0 and model.proprio_projector is None
    obs = _observation(6)
    chunk = VLAPolicy(model, tokenizer, build_pruner("none"), PolicyConfig(unnorm_key=KEY)).step(
        Observation(obs.images, obs.instruction, None, 0.0))
    assert chunk.actions.shape == (CHUNK, ACTION_DIM) and np.isfinite(chunk.actions).all()
