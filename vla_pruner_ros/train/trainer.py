"""``vla-pruner train``: a small model of the project's own architecture family on simulator demos.

Same classes as the OpenVLA implementation (fused DINOv2-reg + SigLIP towers, projector, Llama,
OFT-style chunked L1 head with a proprio token), at a size that trains on a 2-core CPU. Batches
hold prompts of one token length (bucketed), so no padding enters the model and training sees
exactly the layout inference sees. Validation uses the held-out episodes. Checkpoints are regular
checkpoint directories (``checkpoint/``) plus ``trainer_state.pt`` to resume.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch import nn

from ..errors import VLAPrunerError
from ..model import build_model, build_tokenizer, load_checkpoint, save_checkpoint
from ..model.actions import ActionNormalizer, normalize_bounds
from ..model.config import RESIZES, VLAConfig
from ..model.interface import PruneSpec, SelectionInput
from ..model.tokenizer import encode_prompt
from ..model.vision import preprocess_images
from ..pruning.base import budget
from ..sim_vocabulary import COLORS
from ..yaml_file import load_yaml
from .dataset import Episode, chunk_targets, load_episodes, norm_stats

NORM_KEY = "sim_tabletop"
SCENE_DIM = 5  # target object xyz and plate xy, relative to the end effector
SCENE_SCALE = 0.2  # metres -> roughly unit targets
TABLE_CENTRE = (0.5, 0.0, 0.02)  # the word head predicts the named object's position relative to this


LOSSES = {"l1": torch.abs, "mse": torch.square}  # elementwise; averaged per sample by batch_losses


class TrainError(VLAPrunerError):
    """A training configuration or data problem, named."""


def load_trainer_state(path: Path) -> dict:
    """``trainer_state.pt`` (step, optimiser and scene-head tensors, generator state, config: plain data)
    read with ``torch.load(weights_only=True)``: anything but tensors and plain data is refused."""
    import pickle

    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrainError(f"{path} holds more than tensors and plain data, so it is refused (not written by "
                         f"`vla-pruner train`?): {first}") from None
    if not isinstance(state, dict) or not {"step", "optimizer", "rng", "config"} <= set(state):
        raise TrainError(f"{path} is not a trainer state written by `vla-pruner train`")
    return state


@dataclass(frozen=True)
class TrainConfig:
    """Attributes: model sizes (image_size / patch_size = tokens per side), optimisation, augmentation."""

    image_size: int = 96
    resize: str = "cv2_cubic"  # how frames are resized to image_size (model.config.RESIZES); the shipped model's
    patch_size: int = 8  # 12 x 12 = 144 visual tokens
    vision_dim: int = 64
    vision_layers: int = 3  # the second-to-last block's output is used, as OpenVLA
    vision_heads: int = 4
    llm_dim: int = 192
    llm_layers: int = 4
    llm_heads: int = 8
    llm_mlp: int = 512
    chunk_len: int = 8
    prune_layer: int = 1  # K recorded in config.json for the methods that prune inside the LLM
    batch_size: int = 32
    steps: int = 4000
    lr: float = 1e-3
    loss: str = "mse"  # mse | l1: an L1 start from scratch collapses onto the per-dimension median
    aux_weight: float = 1.0  # auxiliary scene loss (see SceneHead); 0 = off
    counterfactual: float = 0.0  # share of samples whose instruction names another object (see Batches)
    weight_decay: float = 0.01
    warmup_steps: int = 100
    shift_px: int = 4  # random translation augmentation
    color_jitter: float = 0.1  # brightness/contrast jitter
    val_every: int = 250
    save_every: int = 250
    cameras: int = 1  # 1: the front camera; 2: front + wrist (episodes recorded with sim record --wrist)
    # Keep ratios for random visual-token dropping: each batch draws one, and below 1.0 every sample keeps
    # that share of each camera's tokens, uniformly at random, after layer prune_layer (as `random` prunes
    # at run time), so the model learns to act on what pruning leaves. (1.0,) = never drop.
    drop_keep: tuple[float, ...] = (1.0,)
    seed: int = 0
    threads: int = 0  # 0 = torch's default

    def __post_init__(self) -> None:
        if self.resize not in RESIZES:
            raise TrainError(f"resize={self.resize!r}; expected one of {RESIZES}")
        if self.image_size % self.patch_size:
            raise TrainError(f"image_size={self.image_size} must be a multiple of patch_size={self.patch_size}")
        if (self.image_size // self.patch_size) ** 2 < 16:
            raise TrainError("fewer than 16 visual tokens per camera leaves nothing to prune")
        if self.loss not in LOSSES:
            raise TrainError(f"loss={self.loss!r}; expected one of {sorted(LOSSES)}")
        if not 4 <= self.chunk_len <= 8 and self.chunk_len != 1:
            raise TrainError(f"chunk_len={self.chunk_len}; expected 4..8")
        if not self.lr > 0:
            raise TrainError(f"lr={self.lr} must be > 0")
        if self.cameras not in (1, 2):
            raise TrainError(f"cameras={self.cameras}; expected 1 (front) or 2 (front + wrist)")
        if self.aux_weight < 0:
            raise TrainError(f"aux_weight={self.aux_weight} must be >= 0")
        if not 0 <= self.counterfactual < 1:
            raise TrainError(f"counterfactual={self.counterfactual}; expected a share in [0, 1)")
        if self.counterfactual and not self.aux_weight:
            raise TrainError("counterfactual samples train only the auxiliary scene loss; they need aux_weight > 0")
        object.__setattr__(self, "drop_keep", tuple(self.drop_keep) if isinstance(self.drop_keep, (list, tuple))
                           else (self.drop_keep,))
        if not self.drop_keep or not all(isinstance(k, (int, float)) and 0 < k <= 1 for k in self.drop_keep):
            raise TrainError(f"drop_keep={list(self.drop_keep)}; expected a list of keep ratios in (0, 1]")
        for name in ("batch_size", "steps", "val_every", "save_every"):
            if getattr(self, name) < 1:
                raise TrainError(f"{name}={getattr(self, name)} must be >= 1")

    @classmethod
    def from_file(cls, path: str | Path | None, **overrides) -> TrainConfig:
        data = load_yaml(path, "training config", TrainError) if path else {}
        data = {**(data or {}), **{k: v for k, v in overrides.items() if v is not None}}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise TrainError(f"unknown training setting(s) {unknown}; valid: {sorted(names)}")
        return cls(**data)

    def model_config(self, vocab: int, stats: dict) -> VLAConfig:
        tower = dict(hidden_size=self.vision_dim, num_hidden_layers=self.vision_layers,
                     num_attention_heads=self.vision_heads, patch_size=self.patch_size, image_size=self.image_size,
                     layer_norm_eps=1e-6, hidden_act="gelu")
        dino = {**tower, "mlp_ratio": 4, "num_register_tokens": 4, "qkv_bias": True, "use_swiglu_ffn": False,
                "layerscale_value": 1.0}
        siglip = {**tower, "intermediate_size": 4 * self.vision_dim}
        text = dict(hidden_size=self.llm_dim, intermediate_size=self.llm_mlp, num_hidden_layers=self.llm_layers,
                    num_attention_heads=self.llm_heads, num_key_value_heads=self.llm_heads, rms_norm_eps=1e-6,
                    vocab_size=int(math.ceil(vocab / 64) * 64), pad_token_id=0, bos_token_id=1, eos_token_id=2,
                    tie_word_embeddings=False, max_position_embeddings=1024, rope_theta=10000.0)
        return VLAConfig(featurizer=dino, fused_featurizer=siglip, text_config=text, name="sim-tabletop",
                         head="chunk", chunk_len=self.chunk_len, proprio_dim=8, action_token_base=vocab,
                         norm_stats=stats, prune_layer=self.prune_layer, num_cameras=self.cameras,
                         resize=self.resize)


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """(grid*grid, dim) fixed 2-D sine-cosine position code (MAE-style): half the channels encode the row,
    half the column, each at dim/4 frequencies; row-major like the patch sequence."""
    if dim % 4:
        raise TrainError(f"vision_dim={dim} must be a multiple of 4 for the 2-D position code")
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    pos = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(pos, pos, indexing="ij")
    parts = [f(c.reshape(-1, 1) * freqs) for c in (rows, cols) for f in (torch.sin, torch.cos)]
    return torch.cat(parts, dim=1).float()


def init_position_embeddings(model) -> None:
    """Start both towers' learned position embeddings from a 2-D sine-cosine code instead of noise.

    From scratch, random position embeddings leave no linear read-out of where a patch is; the action
    rows must read object positions from the visual tokens they attend to, which then takes far
    longer to learn. The embeddings stay trainable, so the checkpoint layout is unchanged.
    """
    backbone, grid = model.vision_backbone, model.config.grid
    with torch.no_grad():
        dino = backbone.featurizer.embeddings.position_embeddings  # (1, 1 + grid^2, D): CLS row first
        dino[0, 1:] = sincos_2d(grid, dino.shape[-1])
        siglip = backbone.fused_featurizer.embeddings.position_embedding.weight  # (grid^2, D)
        siglip.copy_(sincos_2d(grid, siglip.shape[-1]))


def augment(image: np.ndarray, rng: np.random.Generator, shift: int, jitter: float) -> np.ndarray:
    if shift:
        padded = np.pad(image, ((shift, shift), (shift, shift), (0, 0)), mode="edge")
        dy, dx = rng.integers(0, 2 * shift + 1, size=2)
        image = padded[dy:dy + image.shape[0], dx:dx + image.shape[1]]
    if jitter:
        gain = 1.0 + rng.uniform(-jitter, jitter)
        bias = 255.0 * rng.uniform(-jitter, jitter) / 2
        image = np.clip(image.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    return image


# OpenCV hues (0..179) of the task colours; a pixel with saturation >= 100 and value >= 50 belongs to
# the colour of the nearest hue (the table, plate and gripper are unsaturated)
COLOUR_HUES = np.array([cv2.cvtColor(np.uint8([[np.array(rgb) * 255]]), cv2.COLOR_RGB2HSV)[0, 0, 0]
                        for rgb in COLORS.values()], int)
BACKGROUND_WEIGHT = 0.1  # of patches without a coloured object in the patch-colour loss


def patch_colours(image: np.ndarray, patch: int, min_pixels: int = 2) -> np.ndarray:
    """(M,) label per patch, row-major: 0 = no coloured object, k = the k-th colour of COLORS."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(int)
    dist = np.abs(hsv[..., :1] - COLOUR_HUES)
    label = 1 + np.minimum(dist, 180 - dist).argmin(-1)
    label[(hsv[..., 1] < 100) | (hsv[..., 2] < 50)] = 0
    g = image.shape[0] // patch
    cells = label[:g * patch, :g * patch].reshape(g, patch, g, patch).transpose(0, 2, 1, 3).reshape(g * g, -1)
    counts = np.stack([(cells == k).sum(1) for k in range(len(COLORS) + 1)], 1)
    counts[:, 0] = 0
    return np.where(counts.max(1) >= min_pixels, counts.argmax(1), 0)


class Batch(NamedTuple):
    pixel: torch.Tensor  # (B, 1, 6, S, S)
    ids: torch.Tensor  # (B, T) prompt ids, one length per batch
    proprio: torch.Tensor  # (B, 8) normalised
    targets: torch.Tensor  # (B, chunk_len, 7) normalised actions
    scene: torch.Tensor  # (B, SCENE_DIM) scene offsets / SCENE_SCALE (NaN when not recorded)
    weight: torch.Tensor  # (B,) weight of each sample's action loss: 0 for counterfactual samples
    word: torch.Tensor  # (B,) index in ``ids`` of the instruction's colour word (-1: none)
    named: torch.Tensor  # (B, 3) the named object's position minus TABLE_CENTRE, / SCENE_SCALE
    colours: torch.Tensor  # (B, cameras * M) patch colour labels of the (augmented) frames, see patch_colours


class SceneHead(nn.Module):
    """Training-only auxiliary heads: from the mean of the action rows' final hidden states, predict where
    the target object and the plate are relative to the end effector; from the final hidden state of the
    instruction's colour word, where the named object is on the table (``word``); from each visual token
    entering the LLM, which task colour its patch shows (``colour``: a stand-in for the semantic features
    that pretrained vision towers bring, which the colour words can then be matched against).

    The action targets carry the grounding signal weakly (most steps of a chunk move little in x/y), so a
    model trained from scratch takes very long to learn to find the named object among the visual tokens;
    this dense, per-step signal teaches exactly that. Not part of the checkpoint; inference never uses it.
    """

    def __init__(self, llm_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(llm_dim, SCENE_DIM)
        self.word = nn.Linear(llm_dim, 3)
        self.colour = nn.Linear(llm_dim, len(COLORS) + 1)

    def forward(self, action_rows: torch.Tensor) -> torch.Tensor:
        return self.fc(action_rows.mean(dim=1))


def counterfactuals(e: Episode) -> list[tuple[str, str]]:
    """(instruction, object) pairs for the other objects of the scene: the episode's instruction with its
    object ("the red cube") replaced by another one whose colour no other object of the scene has."""
    named = [k for k in e.objects if re.search(rf"\bthe {k}\b", e.instruction)]
    if len(named) != 1:
        return []
    colours = [k.split()[0] for k in e.objects]
    return [(re.sub(rf"\bthe {named[0]}\b", f"the {k}", e.instruction), k) for k in e.objects
            if k != named[0] and colours.count(k.split()[0]) == 1 and k.split()[0] != named[0].split()[0]]


class Batches:
    """Samples (episode, step) grouped by prompt length; yields model-ready tensors.

    With ``counterfactual`` > 0, that share of the training samples (where the scene has other objects
    of their own colour) keep the frame but get an instruction naming another object of the scene; their
    scene-loss target becomes that object and their action loss is off (no demonstration exists for
    it). The same image with different words then needs different answers, which a model that reads
    the target from the scene layout or from where the hand is heading cannot give: it must bind the
    colour word to the object."""

    def __init__(self, episodes: list[Episode], tokenizer, model_config: VLAConfig, cfg: TrainConfig) -> None:
        self.episodes, self.cfg, self.mcfg = episodes, cfg, model_config
        self.normalizer = ActionNormalizer(model_config.norm_stats, NORM_KEY, model_config.action_dim)
        stats = model_config.norm_stats[NORM_KEY]["proprio"]
        self.p_low, self.p_high = np.array(stats["q01"]), np.array(stats["q99"])
        def ids(text: str) -> list[int]:
            return encode_prompt(tokenizer, model_config.prompt_template.format(instruction=text.lower()), None)

        self.ids = [ids(e.instruction) for e in episodes]
        self.colour_ids = set(tokenizer.convert_tokens_to_ids(list(COLORS)))
        # per episode: (prompt ids, object) of its counterfactual instructions of the same prompt length
        self.alternatives = [[(a, k) for a, k in ((ids(text), k) for text, k in counterfactuals(e))
                              if len(a) == len(self.ids[i])] for i, e in enumerate(episodes)]
        self.buckets: dict[int, list[tuple[int, int]]] = {}
        for i, e in enumerate(episodes):
            for t in range(len(e.images)):
                self.buckets.setdefault(len(self.ids[i]), []).append((i, t))
        self.sizes = np.array([len(v) for v in self.buckets.values()], float)

    def __len__(self) -> int:
        return int(self.sizes.sum())

    def proprio(self, p: np.ndarray) -> np.ndarray:
        return normalize_bounds(p, self.p_low, self.p_high)  # exactly as VLAPolicy does at run time

    def make(self, items: list[tuple[int, int]], rng: np.random.Generator | None):
        cfg = self.cfg
        images, proprio, targets, scene, ids, weight, named, colours = [], [], [], [], [], [], [], []
        for i, t in items:
            e = self.episodes[i]
            frames = [f if rng is None else augment(f, rng, cfg.shift_px, cfg.color_jitter)
                      for f in e.frames(t, self.mcfg.num_cameras)]
            images.append(preprocess_images(frames, self.mcfg))
            colours.append(np.concatenate([patch_colours(f, cfg.patch_size) for f in frames]))
            proprio.append(self.proprio(e.proprio[t]))
            targets.append(self.normalizer.normalize(chunk_targets(e.actions, t, cfg.chunk_len)))
            s = e.scene[t].copy() if e.scene is not None else np.full(SCENE_DIM, np.nan)
            prompt, w = self.ids[i], 1.0  # one length per bucket, each sample its own instruction
            if rng is not None and self.alternatives[i] and rng.random() < cfg.counterfactual:
                prompt, obj = self.alternatives[i][int(rng.integers(len(self.alternatives[i])))]
                s[:3], w = e.objects[obj][t] - e.proprio[t, :3], 0.0
            named.append((s[:3] + e.proprio[t, :3] - TABLE_CENTRE) / SCENE_SCALE)
            scene.append(s / SCENE_SCALE)
            ids.append(prompt)
            weight.append(w)
        pixel = torch.stack(images)  # (B, cameras, 6, S, S)
        word = [next((j for j, tok in enumerate(p) if tok in self.colour_ids), -1) for p in ids]
        return Batch(pixel, torch.tensor(ids), torch.tensor(np.array(proprio), dtype=torch.float32),
                     torch.tensor(np.array(targets), dtype=torch.float32),
                     torch.tensor(np.array(scene), dtype=torch.float32), torch.tensor(weight), torch.tensor(word),
                     torch.tensor(np.array(named), dtype=torch.float32), torch.tensor(np.array(colours)))

    def sample(self, rng: np.random.Generator):
        keys = list(self.buckets)
        bucket = self.buckets[keys[rng.choice(len(keys), p=self.sizes / self.sizes.sum())]]
        picks = rng.choice(len(bucket), size=min(self.cfg.batch_size, len(bucket)), replace=len(bucket) <
                           self.cfg.batch_size)
        return self.make([bucket[k] for k in picks], rng)

    def all_batches(self):
        for bucket in self.buckets.values():
            for k in range(0, len(bucket), self.cfg.batch_size):
                yield self.make(bucket[k:k + self.cfg.batch_size], None)


def random_drop(keep: float, generator: torch.Generator):
    """A selector keeping ``budget(keep, M_c)`` uniformly random tokens of each camera, per sample."""
    def select(inp: SelectionInput) -> torch.Tensor:
        b = inp.visual_hidden.shape[0]
        picks = []
        for start, end in inp.layout.visual:
            m = end - start
            order = torch.rand(b, m, generator=generator).argsort(dim=1)
            picks.append(order[:, :budget(keep, m)] + (start - inp.layout.visual_start))
        return torch.cat(picks, dim=1).sort(dim=1).values.to(inp.visual_hidden.device)
    return select


def final_hidden(model, batch: Batch, keep: float = 1.0, generator: torch.Generator | None = None):
    """Final hidden states of the sequence, its Layout, the visual tokens and the number of visual rows
    dropped; ``keep`` < 1 drops visual tokens at random after layer K (``random_drop``). Every row after the
    visual span sits that many rows earlier in the hidden states."""
    visual = model.encode_images(batch.pixel)
    embeds, layout = model.build_inputs(visual, batch.ids, batch.proprio)
    prune = None
    if keep < 1.0:
        prune = PruneSpec(model.config.prune_layer, random_drop(keep, generator or torch.Generator()))
    res = model.run_llm(embeds, layout, prune)
    return res.hidden, layout, visual, embeds.shape[1] - res.hidden.shape[1]


def action_rows(model, batch: Batch) -> torch.Tensor:
    """Final hidden states (B, chunk_len * A, d) of the action query rows, unpruned."""
    hidden, layout, _, _ = final_hidden(model, batch)
    return hidden[:, torch.arange(*layout.readout)]


def batch_losses(model, batch: Batch, kind: str = "l1", scene_head: SceneHead | None = None, keep: float = 1.0,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(chunk regression loss (``kind`` from LOSSES) in normalised action units, auxiliary scene MSE or None),
    with random visual-token dropping at ``keep`` < 1 (``final_hidden``)."""
    hidden, layout, visual, dropped = final_hidden(model, batch, keep, generator)
    rows = hidden[:, torch.arange(*layout.readout) - dropped]
    per_sample = LOSSES[kind](model.action_head(rows) - batch.targets).mean(dim=(1, 2))
    loss = (per_sample * batch.weight).sum() / batch.weight.sum().clamp(min=1.0)
    if scene_head is None:
        return loss, None
    aux = (scene_head(rows) - batch.scene).pow(2).mean()
    has = batch.word >= 0
    if has.any():  # the ids' token j (j >= 1; 0 is BOS) sits at row text[0] + j - 1
        word_rows = hidden[torch.nonzero(has)[:, 0], layout.text[0] + batch.word[has] - 1 - dropped]
        aux = aux + (scene_head.word(word_rows) - batch.named[has]).pow(2).mean()
    weights = torch.ones(len(COLORS) + 1)
    weights[0] = BACKGROUND_WEIGHT
    aux = aux + nn.functional.cross_entropy(scene_head.colour(visual).flatten(0, 1), batch.colours.flatten(),
                                            weight=weights)
    return loss, aux


def _split(data_dir: str | Path, cfg: TrainConfig) -> tuple[list, list]:
    """(training, validation) episodes: held-out ones validate (else the last tenth of the training ones)."""
    episodes = load_episodes(data_dir, cfg.image_size, resize=cfg.resize)
    train_eps = [e for e in episodes if not e.held_out]
    val_eps = [e for e in episodes if e.held_out] or train_eps[-max(1, len(train_eps) // 10):]
    if not train_eps:
        raise TrainError(f"{data_dir} has only held-out episodes; record training ones with --split train")
    return train_eps, val_eps


def _starting_model(cfg: TrainConfig, tokenizer, train_eps: list, ckpt: Path, state: dict | None,
                    init: str | Path | None, log):
    """The model to train: the run's own checkpoint when resuming (``state`` given), else ``init``'s weights
    with this data's statistics, else fresh weights."""
    if state is not None:
        return load_checkpoint(ckpt).train()
    wanted = cfg.model_config(len(tokenizer), norm_stats(train_eps, NORM_KEY))
    if not init:
        model = build_model(wanted, seed=cfg.seed).train()
        init_position_embeddings(model)
        return model
    model = load_checkpoint(init).train()
    # the weights do not depend on the number of cameras (one vision tower sees each frame)
    if model.config.replace(norm_stats={}, num_cameras=1) != wanted.replace(norm_stats={}, num_cameras=1):
        raise TrainError(f"--init {init} has other model sizes than the training config; "
                         f"its config: {model.config.replace(norm_stats={})}")
    log(f"starting from the weights of {init}" + (
        f" ({model.config.num_cameras} camera(s) there, {wanted.num_cameras} here)"
        if model.config.num_cameras != wanted.num_cameras else ""))
    model.config = wanted
    return model


def _scene_head(cfg: TrainConfig, train_eps: list, train_b: Batches, llm_dim: int, state: dict | None):
    """The auxiliary scene head (None without ``aux_weight``), after checking the data carries its targets."""
    if cfg.aux_weight <= 0:
        return None
    missing = [e.name for e in train_eps if e.scene is None]
    if missing:
        raise TrainError(f"aux_weight={cfg.aux_weight} needs the /scene/target and /scene/plate topics, which "
                         f"{len(missing)} episode(s) lack (e.g. {missing[0]}); re-record them with "
                         "`vla-pruner sim record`, or set aux_weight: 0")
    if cfg.counterfactual and not any(train_b.alternatives):
        raise TrainError(f"counterfactual={cfg.counterfactual} needs the /scene/object/* topics (every object's "
                         "pose), which these episodes lack; re-record them with `vla-pruner sim record`, or set "
                         "counterfactual: 0")
    torch.manual_seed(cfg.seed)
    head = SceneHead(llm_dim)
    if state is not None and state.get("scene_head"):
        head.load_state_dict(state["scene_head"])
    return head


def train(data_dir: str | Path, out_dir: str | Path, cfg: TrainConfig, resume: bool = False, log=None,
          init: str | Path | None = None) -> dict:
    """Train; returns a summary (steps, train/val loss, seconds). Writes ``out_dir/checkpoint``.

    ``init``: start from this checkpoint's weights (same sizes as ``cfg``) with a fresh optimiser and
    schedule and the new data's ``norm_stats``, e.g. to go on training on re-recorded episodes."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train_eps, val_eps = _split(data_dir, cfg)
    tokenizer = build_tokenizer()
    state_path, ckpt = out_dir / "trainer_state.pt", out_dir / "checkpoint"
    state = load_trainer_state(state_path) if resume and state_path.exists() else None
    step = 0
    if state is not None:
        step = int(state["step"])
        rng.bit_generator.state = state["rng"]
        log(f"resuming from step {step}")
    model = _starting_model(cfg, tokenizer, train_eps, ckpt, state, init, log)
    mcfg = model.config
    train_b, val_b = Batches(train_eps, tokenizer, mcfg, cfg), Batches(val_eps, tokenizer, mcfg, cfg)
    scene_head = _scene_head(cfg, train_eps, train_b, mcfg.llm_dim, state)
    params = list(model.parameters()) + (list(scene_head.parameters()) if scene_head else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup_steps) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / cfg.steps))), last_epoch=step - 1 if step else -1)
    log(f"{len(train_eps)} training episodes ({len(train_b)} samples), {len(val_eps)} validation episodes; "
        f"{sum(p.numel() for p in model.parameters()):,} parameters; {mcfg.tokens_per_camera} visual tokens")
    start, losses, aux_losses, val, first = time.time(), [], [], float("nan"), step

    low = min(cfg.drop_keep)  # validated unpruned, and at the lowest drop ratio when training drops tokens

    def validate(keep: float = 1.0) -> float:
        model.eval()
        with torch.no_grad():
            total, n = 0.0, 0
            for k, batch in enumerate(val_b.all_batches()):
                g = torch.Generator().manual_seed(k)  # the same draws at every validation
                total += float(batch_losses(model, batch, keep=keep, generator=g)[0]) * len(batch.ids)
                n += len(batch.ids)
        model.train()
        return total / max(n, 1)

    def save() -> None:
        save_checkpoint(model, ckpt, tokenizer)
        torch.save({"step": step, "optimizer": opt.state_dict(), "rng": rng.bit_generator.state,
                    "scene_head": scene_head.state_dict() if scene_head else None,
                    "config": dataclasses.asdict(cfg)}, state_path)

    val_low = float("nan")
    while step < cfg.steps:
        keep = cfg.drop_keep[int(rng.integers(len(cfg.drop_keep)))] if len(cfg.drop_keep) > 1 else cfg.drop_keep[0]
        drop = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)  # the same draws when resumed
        loss, aux = batch_losses(model, train_b.sample(rng), cfg.loss, scene_head, keep, drop)
        opt.zero_grad()
        (loss if aux is None else loss + cfg.aux_weight * aux).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        schedule.step()
        step += 1
        losses.append(loss.item())
        aux_losses.append(float("nan") if aux is None else aux.item())
        if step % 10 == 0 or step == cfg.steps:
            rate = (step - first) / max(time.time() - start, 1e-9)
            log(f"step {step}/{cfg.steps}  {cfg.loss} {np.mean(losses[-10:]):.4f}  "
                f"scene {np.mean(aux_losses[-10:]):.4f}  val L1 {val:.4f}  "
                + (f"(keep {low:g}: {val_low:.4f})  " if low < 1 else "") +
                f"lr {schedule.get_last_lr()[0]:.2e}  {rate:.2f} steps/s")
        if step % cfg.val_every == 0 or step == cfg.steps:
            val = validate()
            val_low = validate(low) if low < 1 else val
        if step % cfg.save_every == 0 or step == cfg.steps:
            save()
    summary = {"steps": step, "train_loss": float(np.mean(losses[-50:])) if losses else None, "val_loss": val,
               **({f"val_loss_keep_{low:g}": val_low} if low < 1 else {}),
               "seconds": round(time.time() - start, 1), "train_episodes": len(train_eps),
               "val_episodes": len(val_eps), "checkpoint": str(ckpt)}
    (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary

