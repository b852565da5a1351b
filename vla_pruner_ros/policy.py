"""One control tick: Observation -> ActionChunk. The only inference loop; the ROS node, bag replay,
the simulator and the benchmarks all call ``VLAPolicy.step``.

The policy owns the pruner and so the pruner's temporal state: it persists across ``step`` calls,
and ``reset()`` (or a change of instruction) starts a new episode.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import InputError, NonFiniteActionError, SettingsError
from .model.actions import (
    ActionNormalizer,
    normalize_bounds,
    normalize_masked,
    normalize_mean_std,
    stat_bounds,
    stat_mean_std,
)
from .model.family import FamilyModel
from .pruning import Pruner, build_pruner
from .settings import DEFAULT_ACTION_NAMES


@dataclass
class Observation:
    """Inputs of one tick.

    Attributes:
        images: one RGB uint8 frame (H, W, 3) per camera, in the model's camera order.
        instruction: the task in natural language.
        proprio: optional robot state (the model's ``proprio_dim`` values).
        stamp: time the frames were taken (s); carried to the ActionChunk.
    """

    images: Sequence[np.ndarray]
    instruction: str
    proprio: np.ndarray | None = None
    stamp: float = 0.0


@dataclass
class TickStats:
    method: str
    tick: int  # tick index within the episode, from 0
    keep_ratio: float
    tokens_kept: list[int]  # visual tokens kept per camera
    tokens_total: list[int]  # visual tokens per camera
    latency_ms: dict[str, float]  # vision, prefill, decode, select, total
    llm_flops: float
    llm_flops_ratio: float  # versus the same tick unpruned
    phase: str  # interaction phase of the pruner's state (approach | interaction)


@dataclass
class ActionChunk:
    """``actions`` (chunk_len, action_dim) un-normalised; step i is meant for ``stamp + i * dt``."""

    actions: np.ndarray
    names: tuple[str, ...]
    dt: float
    stamp: float
    stats: TickStats
    kept_tokens: list[np.ndarray] | None = field(repr=False, default=None)  # per camera; None = all kept


@dataclass(frozen=True)
class PolicyConfig:
    """Attributes:
        unnorm_key: dataset key of the checkpoint's norm_stats; may be omitted if it has one key.
        action_names: a name per action dimension (published as joint_names).
        dt: duration of one action step (s).
        use_cache: KV-cached decoding for the tokens head.
        warmup_ticks: the first ticks of each episode run unpruned, whatever the method (0: every
            tick spends the method's budget). A policy setting, so every method gets the same.
        seed: seeds the generator of a sampling model's noise (pi0's flow matching), reseeded at every
            episode start, so an episode replays identically.
    """

    unnorm_key: str | None = None
    action_names: tuple[str, ...] = DEFAULT_ACTION_NAMES
    dt: float = 0.2
    use_cache: bool = True
    warmup_ticks: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.dt, (int, float)) and self.dt > 0 and math.isfinite(self.dt)):
            raise SettingsError(f"dt={self.dt!r} must be a positive number of seconds")
        if isinstance(self.warmup_ticks, bool) or not isinstance(self.warmup_ticks, int) or self.warmup_ticks < 0:
            raise SettingsError(f"warmup_ticks={self.warmup_ticks!r} must be an integer >= 0")


class VLAPolicy:
    """A pruned VLA with its temporal state; one ``step`` per control tick."""

    def __init__(self, model: FamilyModel, tokenizer, pruner: Pruner | None = None,
                 config: PolicyConfig | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.pruner = pruner or build_pruner("none")
        self.config = config or PolicyConfig()
        mcfg = model.config
        if len(self.config.action_names) != mcfg.action_dim:
            raise SettingsError(f"action_names has {len(self.config.action_names)} names "
                             f"{list(self.config.action_names)}; "
                             f"the model has action_dim={mcfg.action_dim}")
        self.normalizer = ActionNormalizer(mcfg.norm_stats, self.config.unnorm_key, mcfg.action_dim, mcfg.norm_type,
                                           mcfg.norm_eps)
        self._normalize_proprio = self._proprio_normalizer(mcfg.norm_stats[self.normalizer.key].get("proprio"))
        self._instruction: str | None = None
        self._input_ids: torch.Tensor | None = None
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.state = self.pruner.new_state()
        self.pruner.validate(mcfg)  # a bad pruning layer fails now, not at the first tick


    def _proprio_normalizer(self, stats: dict | None) -> Callable[[np.ndarray], np.ndarray] | None:
        """How raw proprio maps to the model's input: pi0's mean/std; OFT's formula on its required statistics
        for an OFT head; else this project's floored q01/q99 bounds where the statistics have them; else
        unchanged."""
        mcfg = self.model.config
        where = f"norm_stats[{self.normalizer.key!r}].proprio"
        if mcfg.norm_type == "mean_std":
            mean, std = stat_mean_std(stats, where)
            if len(mean) != mcfg.proprio_dim:
                raise SettingsError(f"{where} has {len(mean)} dimensions; the model takes {mcfg.proprio_dim}")
            return functools.partial(normalize_mean_std, mean=mean, std=std, eps=mcfg.norm_eps)
        if mcfg.head == "oft" and mcfg.proprio_dim:
            low, high, mask = stat_bounds(stats, mcfg.norm_type, where)
            if len(low) != mcfg.proprio_dim:
                raise SettingsError(f"{where} has {len(low)} dimensions; the model's proprio projector takes "
                                    f"{mcfg.proprio_dim}")
            return functools.partial(normalize_masked, low=low, high=high, mask=mask, eps=mcfg.norm_eps)
        if not stats or "q01" not in stats or len(stats["q01"]) != mcfg.proprio_dim:
            return None
        return functools.partial(normalize_bounds, low=np.asarray(stats["q01"], float),
                                 high=np.asarray(stats["q99"], float))

    @property
    def instruction(self) -> str | None:
        return self._instruction

    def reset(self) -> None:
        """Start a new episode: clears the pruner's temporal state and reseeds the noise generator (the
        instruction stays set)."""
        self.state.reset(self._instruction)
        self.generator.manual_seed(self.config.seed)

    def state_dict(self) -> dict[str, Any]:
        """A JSON-friendly snapshot of the temporal state (see ``TemporalState.snapshot``)."""
        return self.state.snapshot()

    def load_state_dict(self, snapshot: dict[str, Any]) -> None:
        """Restore a snapshot taken with ``state_dict`` (same instruction, same temporal state)."""
        if snapshot.get("instruction"):
            self._set_instruction(snapshot["instruction"])
        self.state.restore(snapshot)

    # ---- one tick -------------------------------------------------------------------------------
    def _validate(self, obs: Observation) -> None:
        cams = self.model.config.num_cameras
        if len(obs.images) != cams:
            raise InputError(f"observation has {len(obs.images)} image(s); the model expects {cams} camera(s)")
        for i, image in enumerate(obs.images):
            if not isinstance(image, np.ndarray):
                raise InputError(f"images[{i}] is a {type(image).__name__}; expected a numpy array (H, W, 3)")
            if image.dtype != np.uint8:
                raise InputError(f"images[{i}] has dtype {image.dtype}; expected uint8 RGB")
            if image.ndim != 3 or image.shape[2] != 3:
                raise InputError(f"images[{i}] has shape {image.shape}; expected (H, W, 3) with 3 RGB channels")
            if image.shape[0] < 1 or image.shape[1] < 1:
                raise InputError(f"images[{i}] is empty (shape {image.shape})")
        if not isinstance(obs.instruction, str) or not obs.instruction.strip():
            raise InputError(f"instruction={obs.instruction!r} must be a non-empty string")
        pdim = self.model.config.proprio_dim
        if pdim:
            if obs.proprio is None:
                raise InputError(f"proprio is missing; the model expects {pdim} values")
            p = np.asarray(obs.proprio, dtype=np.float64)
            if p.shape != (pdim,):
                raise InputError(f"proprio has shape {p.shape}; expected ({pdim},)")
            if not np.all(np.isfinite(p)):
                raise InputError(f"proprio contains NaN or inf: {p.tolist()}")
        if not math.isfinite(float(obs.stamp)):
            raise InputError(f"stamp={obs.stamp!r} must be finite")

    def _set_instruction(self, instruction: str) -> None:
        instruction = instruction.strip()
        if instruction != self._instruction:
            self._instruction = instruction
            self.reset()
            self._input_ids = torch.tensor([self.model.prompt_ids(self.tokenizer, instruction)], dtype=torch.long)

    def _proprio_tensor(self, proprio: np.ndarray | None) -> torch.Tensor | None:
        if not self.model.config.proprio_dim:
            return None
        p = np.asarray(proprio, dtype=np.float64)
        if self._normalize_proprio is not None:
            p = self._normalize_proprio(p)
        return self.model.proprio_input(p)

    @torch.inference_mode()
    def step(self, obs: Observation) -> ActionChunk:
        """Run one tick. Raises InputError on bad input, NonFiniteActionError on a NaN/inf output."""
        t_start = time.perf_counter()
        self._validate(obs)
        self._set_instruction(obs.instruction)
        mcfg = self.model.config
        images = [np.asarray(im) for im in obs.images]
        pixel_values = self.model.preprocess(images)  # (1, cams, C, S, S)
        t_prepare = time.perf_counter()
        spec = self.pruner.prune_spec(mcfg, self.state, images, warmup=self.state.tick < self.config.warmup_ticks)
        prepare_s = time.perf_counter() - t_prepare
        pred = self.model.predict(pixel_values, self._input_ids, self._proprio_tensor(obs.proprio), spec,
                                  use_cache=self.config.use_cache, generator=self.generator)
        normalized = pred.actions[0].float().cpu().numpy().astype(np.float64)  # (T, A)
        if not np.all(np.isfinite(normalized)):
            raise NonFiniteActionError(f"the model produced non-finite actions at tick {self.state.tick}: "
                                       f"{normalized.tolist()}")
        actions = self.normalizer.unnormalize(normalized)
        tick = self.state.tick
        per_cam = mcfg.tokens_per_camera
        kept_tokens = None
        if pred.visual_keep is None:
            kept = [per_cam] * mcfg.num_cameras
        else:
            keep = pred.visual_keep[0].cpu().numpy()
            kept_tokens = [keep[(keep >= c * per_cam) & (keep < (c + 1) * per_cam)] - c * per_cam
                           for c in range(mcfg.num_cameras)]
            kept = [len(k) for k in kept_tokens]
        k = self.pruner.config.layer if pred.visual_keep is not None else mcfg.num_layers
        flops, full = self.model.tick_flops(int(self._input_ids.shape[1]), sum(kept), k)
        latency = {name: 1000.0 * sec for name, sec in pred.timings.items()}
        t_observe = time.perf_counter()
        self.pruner.observe(pred, self.state, 1000.0 * (t_observe - t_start))
        t_end = time.perf_counter()
        # the method's whole cost: its image priors before the model, scoring and selecting inside it, and
        # updating its temporal state after it
        latency["select"] = latency.get("select", 0.0) + 1000.0 * (prepare_s + t_end - t_observe)
        latency["total"] = 1000.0 * (t_end - t_start)
        stats = TickStats(self.pruner.name, tick, self.state.keep_ratio, kept, [per_cam] * mcfg.num_cameras, latency,
                          flops, flops / full, self.state.phase)
        return ActionChunk(actions, tuple(self.config.action_names), self.config.dt, float(obs.stamp), stats,
                           kept_tokens)
