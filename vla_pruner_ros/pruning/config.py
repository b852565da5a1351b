"""Every pruning method's parameters: named, documented, validated dataclasses (no torch).

The node's settings, parameter files and the command line read method parameters from here; each
method's algorithm lives in ``pruning/<method>.py`` and takes its config class from this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import PrunerConfigError


@dataclass(frozen=True)
class PrunerConfig:
    """Parameters every method has.

    Attributes:
        keep_ratio: share of each camera's visual tokens kept, rho in (0, 1]; M~ = round(rho * M).
        layer: K, the decoder layer where pruning happens (layers < K see every token); 0 = before
            the LLM. The VLA papers use K = 3 (K = 2 was much worse for VLA-Pruner).
    """

    keep_ratio: float = 1.0
    layer: int = 3

    def __post_init__(self) -> None:
        _check_ratio("keep_ratio", self.keep_ratio)
        if not isinstance(self.layer, int) or isinstance(self.layer, bool) or self.layer < 0:
            raise PrunerConfigError(f"layer={self.layer!r} must be an integer >= 0")


def _check_ratio(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
        raise PrunerConfigError(f"{name}={value!r} must be in (0, 1]")


def _check_positive(name: str, value: Any, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        raise PrunerConfigError(f"{name}={value!r} must be a positive {'integer' if integer else 'number'}")


@dataclass(frozen=True)
class NoneConfig(PrunerConfig):
    """No parameters of its own; ``keep_ratio`` is ignored (always 1)."""


@dataclass(frozen=True)
class RandomConfig(PrunerConfig):
    """Attributes:
        seed: the draw of tick t, camera c comes from a generator seeded with (seed, t, c), so an
            episode replays identically and needs no state beyond the tick counter.
    """

    seed: int = 0


@dataclass(frozen=True)
class FastVConfig(PrunerConfig):
    """K must be >= 1: the score is attention at layer K-1."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layer < 1:
            raise PrunerConfigError(f"fastv needs layer >= 1 (attention at layer K-1); got layer={self.layer}")


@dataclass(frozen=True)
class DivPruneConfig(PrunerConfig):
    """Attributes:
        layer: 0 by default: tokens are chosen from the projector outputs before the first LLM layer.
    """

    layer: int = 0


SEMANTIC_QUERIES = ("all", "text", "last")


@dataclass(frozen=True)
class VLAPrunerConfig(PrunerConfig):
    """Attributes:
        layer: K = 3 (the paper: K = 2 was much worse, 58.5 vs 74.5 average success).
        semantic_query: prefill rows whose attention at layer K-1 gives S_vl: ``last`` (the last prompt
            row, FastV-style: the authors' later advice, as more stable), ``text``, or ``all`` (the
            paper: every visual and text row). ``last`` is the default here also because ``all`` costs
            a whole extra attention pass over the prefill (on the shipped model about a quarter of a
            tick, BENCHMARKS.md), which the method's selection must not.
        action_layer: layer of the action-query attention; None = the middle of the stack,
            ``(L - 1) // 2`` (15 of 32, as the official code).
        window: w, ticks of action attention kept (paper default 3).
        gamma: decay of older ticks (paper default 0.8; 0.6..0.9 reported stable).

    No per-method warm-up (the paper runs unpruned until the window holds ``w`` ticks): every tick
    spends the budget, so methods compare at the same one. Until the window fills, the action
    estimate covers the ticks there are, and with no history at all (an episode's first tick) the
    candidates are the semantic top-M~ alone. An unpruned warm-up, when wanted, is the policy's
    ``warmup_ticks``, for every method alike.
    """

    semantic_query: str = "last"
    action_layer: int | None = None
    window: int = 3
    gamma: float = 0.8

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layer < 1:
            raise PrunerConfigError(f"{type(self).__name__} needs layer >= 1 (semantic attention at layer K-1)")
        if self.semantic_query not in SEMANTIC_QUERIES:
            raise PrunerConfigError(f"semantic_query={self.semantic_query!r}; expected one of {SEMANTIC_QUERIES}")
        _check_positive("window", self.window, integer=True)
        _check_ratio("gamma", self.gamma)
        if self.action_layer is not None and (isinstance(self.action_layer, bool) or not isinstance(
                self.action_layer, int) or self.action_layer < 0):
            raise PrunerConfigError(f"action_layer={self.action_layer!r} must be a layer index >= 0 or null")


@dataclass(frozen=True)
class InteractionConfig(PrunerConfig):
    """Attributes (see the module docstring for the reasoning behind each default):
        theta: IoU above which the robot is taken to interact with the target (paper: 0.05).
        semantic_threshold: S mask = S >= this share of its peak.
        motion_threshold: M mask = M >= this share of its peak.
        semantic_sigma: Gaussian smoothing of S over the patch grid (patches).
        motion_sigma: Gaussian blur of the frame difference (working pixels).
        morph_kernel: size of the opening/closing element (working pixels, odd).
        motion_decay: weight of the accumulated motion from previous ticks.
        work_px_per_patch: image prior working resolution, pixels per patch side.
        anchor_ratio: share of each camera's tokens, strongest in edges, that are anchors.
        enter_ticks: consecutive ticks with IoU > theta needed to enter the interaction phase.
        exit_ticks: consecutive ticks with IoU <= theta needed to return to the approach phase.
    """

    theta: float = 0.05
    semantic_threshold: float = 0.5
    motion_threshold: float = 0.3
    semantic_sigma: float = 1.0
    motion_sigma: float = 1.0
    morph_kernel: int = 3
    motion_decay: float = 0.7
    work_px_per_patch: int = 8
    anchor_ratio: float = 0.1
    enter_ticks: int = 2
    exit_ticks: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("theta", "semantic_threshold", "motion_threshold", "anchor_ratio"):
            _check_ratio(name, getattr(self, name))
        for name in ("morph_kernel", "work_px_per_patch", "enter_ticks", "exit_ticks"):
            _check_positive(name, getattr(self, name), integer=True)
        if self.morph_kernel % 2 == 0:
            raise PrunerConfigError(f"morph_kernel={self.morph_kernel} must be odd")
        for name in ("semantic_sigma", "motion_sigma"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise PrunerConfigError(f"{name}={value!r} must be a number >= 0")
        if isinstance(self.motion_decay, bool) or not 0.0 <= float(self.motion_decay) < 1.0:
            raise PrunerConfigError(f"motion_decay={self.motion_decay!r} must be in [0, 1)")


@dataclass(frozen=True)
class VLAIAPConfig(InteractionConfig):
    """Attributes (and those of ``InteractionConfig``):
        layer: 0: select before the first LLM layer, from layer 0's attention on the embeddings.
        temporal_weight: k, the weight of the motion prior in the final score (paper: 0.5).
        edge_weight: w_edge, the weight of the geometric prior (unpublished; 0.3).
        weak_quantile: a token is weak in a prior below this quantile of it (0.5: the median).
    """

    layer: int = 0
    temporal_weight: float = 0.5
    edge_weight: float = 0.3
    weak_quantile: float = 0.5


@dataclass(frozen=True)
class HybridConfig(VLAPrunerConfig, InteractionConfig):
    """Attributes (and those of ``VLAPrunerConfig`` and ``InteractionConfig``):
        keep_ratio: the ratio while approaching (the conservative phase).
        interaction_keep_ratio: the ratio once interaction is locked; None = keep_ratio (no cut: in
            closed loop, halving the budget there lost grasps, see BENCHMARKS.md); lower it for
            VLA-IAP's aggressive interaction phase.
        anchor_ratio: share of each camera's tokens, strongest in edges, always among the candidates.
        semantic_candidates: whether the prefill top-M~ joins the candidates once there is action
            history (on an episode's first tick it always does, there being nothing else).
        relevant_ratio: share of each camera's tokens chosen by relevance (the candidates above, by union
            and diversity; at most the budget); the rest of the budget goes to spatial coverage,
            farthest-point sampling on the patch grid from the tokens already chosen. 1 = relevance only.
        deadline_ms: optional tick latency target; None = no deadline.
        min_keep_ratio: the lowest ratio the deadline may choose.
        last_camera_share: with two cameras, the share of the tick's whole visual budget given to the
            second (wrist) camera; 0.5 = the same keep ratio for both. The total is unchanged.
    """

    interaction_keep_ratio: float | None = None
    anchor_ratio: float = 0.05
    semantic_candidates: bool = False
    relevant_ratio: float = 0.0625
    deadline_ms: float | None = None
    min_keep_ratio: float = 0.05
    last_camera_share: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_ratio("last_camera_share", self.last_camera_share)
        if self.interaction_keep_ratio is not None:
            _check_ratio("interaction_keep_ratio", self.interaction_keep_ratio)
        _check_ratio("min_keep_ratio", self.min_keep_ratio)
        _check_ratio("relevant_ratio", self.relevant_ratio)
        if not isinstance(self.semantic_candidates, bool):
            raise PrunerConfigError(f"semantic_candidates={self.semantic_candidates!r} must be true or false")
        if self.deadline_ms is not None and (isinstance(self.deadline_ms, bool) or not isinstance(
                self.deadline_ms, (int, float)) or self.deadline_ms <= 0):
            raise PrunerConfigError(f"deadline_ms={self.deadline_ms!r} must be a positive number or null")

    @property
    def interaction_ratio(self) -> float:
        if self.interaction_keep_ratio is not None:
            return float(self.interaction_keep_ratio)
        return float(self.keep_ratio)


# method name -> its config class (the registry of algorithms is ``pruning.PRUNERS``)
METHOD_CONFIGS: dict[str, type[PrunerConfig]] = {
    "none": NoneConfig,
    "random": RandomConfig,
    "fastv": FastVConfig,
    "divprune": DivPruneConfig,
    "vla_pruner": VLAPrunerConfig,
    "vla_iap": VLAIAPConfig,
    "hybrid": HybridConfig,
}


def prunes_inside_llm(method: str) -> bool:
    """Whether the method prunes after a decoder layer (K >= 1) by default, so that a model's recommended K
    (``prune_layer``) or a K given for every method applies to it; methods that select before the LLM
    (``divprune``, ``vla_iap``: K = 0) keep theirs."""
    return METHOD_CONFIGS[method]().layer > 0
