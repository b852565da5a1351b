"""Action discretisation (OpenVLA's 256-bin tokenizer) and un-normalisation with dataset statistics."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import UnnormKeyError


class ActionTokenizer:
    """Maps normalised actions in [-1, 1] to token ids at the top of the base vocabulary and back.

    As OpenVLA: ``bins = linspace(-1, 1, n_bins)``; encoding gives ``base - digitize(a, bins)``;
    decoding clips ``base - id - 1`` to ``[0, n_bins - 2]`` and returns that bin's centre.
    """

    def __init__(self, base: int, n_bins: int = 256) -> None:
        self.base = base
        self.n_bins = n_bins
        self.bins = np.linspace(-1.0, 1.0, n_bins)
        self.bin_centers = (self.bins[:-1] + self.bins[1:]) / 2.0

    @property
    def token_range(self) -> tuple[int, int]:
        """Half-open id range ``[lo, hi)`` holding the action tokens."""
        return self.base - self.n_bins, self.base

    def encode(self, actions: np.ndarray) -> np.ndarray:
        clipped = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)
        return self.base - np.digitize(clipped, self.bins)

    def decode(self, token_ids: np.ndarray) -> np.ndarray:
        bins = np.clip(self.base - np.asarray(token_ids) - 1, 0, self.n_bins - 2)
        return self.bin_centers[bins]


def resolve_unnorm_key(norm_stats: dict[str, Any], unnorm_key: str | None) -> str:
    """The dataset key to un-normalise with; errors list the available keys."""
    keys = sorted(norm_stats)
    if unnorm_key is None:
        if len(keys) == 1:
            return keys[0]
        if not keys:
            raise UnnormKeyError("the checkpoint has no norm_stats; actions cannot be un-normalised")
        raise UnnormKeyError(
            f"unnorm_key is needed: the checkpoint has statistics for {len(keys)} datasets; "
            f"choose one of {keys}")
    if unnorm_key not in norm_stats and f"{unnorm_key}_no_noops" in norm_stats:
        return f"{unnorm_key}_no_noops"  # as OFT's LIBERO evaluation: 'libero_10' means 'libero_10_no_noops'
    if unnorm_key not in norm_stats:
        raise UnnormKeyError(f"unnorm_key={unnorm_key!r} is not in the checkpoint's norm_stats; available: {keys}")
    return unnorm_key


_BOUNDS = {"bounds_q99": ("q01", "q99"), "bounds": ("min", "max")}


def stat_bounds(stats: dict[str, Any], norm_type: str, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(low, high, mask) of one statistics entry (``action`` or ``proprio``): q01/q99 for ``bounds_q99``,
    min/max for ``bounds``; the mask defaults to every dimension."""
    lo_key, hi_key = _BOUNDS[norm_type]
    if not stats or lo_key not in stats or hi_key not in stats:
        raise UnnormKeyError(f"{where} has no {lo_key}/{hi_key} statistics (norm_type={norm_type!r})")
    low = np.asarray(stats[lo_key], dtype=np.float64)
    high = np.asarray(stats[hi_key], dtype=np.float64)
    mask = np.asarray(stats.get("mask", [True] * len(low)), dtype=bool)
    if not len(low) == len(high) == len(mask):
        raise UnnormKeyError(f"{where}: {lo_key}, {hi_key} and mask differ in length "
                             f"({len(low)}, {len(high)}, {len(mask)})")
    return low, high, mask


def normalize_mean_std(x: np.ndarray, mean: np.ndarray, std: np.ndarray, eps: float) -> np.ndarray:
    """pi0's (and LeRobot's) normalisation, as PI0Processor.normalize: ``(x - mean) / (std + eps)``."""
    return (np.asarray(x, dtype=np.float64) - mean) / (std + eps)


def stat_mean_std(stats: dict[str, Any], where: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of one statistics entry (``mean_std``: pi0's and LeRobot's normalisation)."""
    if not stats or "mean" not in stats or "std" not in stats:
        raise UnnormKeyError(f"{where} has no mean/std statistics (norm_type='mean_std')")
    mean, std = np.asarray(stats["mean"], dtype=np.float64), np.asarray(stats["std"], dtype=np.float64)
    if len(mean) != len(std):
        raise UnnormKeyError(f"{where}: mean and std differ in length ({len(mean)}, {len(std)})")
    return mean, std


class ActionNormalizer:
    """OpenVLA's bounds normalisation: ``a = 0.5 (x + 1)(high - low + eps) + low`` where ``mask``, else
    ``a = x``; low/high are q01/q99 (``bounds_q99``) or min/max (``bounds``); OFT adds eps = 1e-8.
    ``mean_std`` (pi0): ``a = x (std + eps) + mean``, the inverse of PI0Processor's normalisation."""

    def __init__(self, norm_stats: dict[str, Any], unnorm_key: str | None, action_dim: int,
                 norm_type: str = "bounds_q99", eps: float = 0.0) -> None:
        self.key = resolve_unnorm_key(norm_stats, unnorm_key)
        where = f"norm_stats[{self.key!r}].action"
        self.norm_type, self.eps = norm_type, eps
        if norm_type == "mean_std":
            self.mean, self.std = stat_mean_std(norm_stats[self.key].get("action"), where)
            dims = len(self.mean)
        else:
            self.low, self.high, self.mask = stat_bounds(norm_stats[self.key].get("action"), norm_type, where)
            dims = len(self.low)
        if dims != action_dim:
            raise UnnormKeyError(f"norm_stats[{self.key!r}].action has {dims} dimensions; "
                                 f"the model has action_dim={action_dim}")

    def unnormalize(self, normalized: np.ndarray) -> np.ndarray:
        x = np.asarray(normalized, dtype=np.float64)
        if self.norm_type == "mean_std":
            return x * (self.std + self.eps) + self.mean
        return np.where(self.mask, 0.5 * (x + 1.0) * (self.high - self.low + self.eps) + self.low, x)

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        if self.norm_type == "mean_std":
            return normalize_mean_std(actions, self.mean, self.std, self.eps)
        a = np.asarray(actions, dtype=np.float64)
        span = np.where(self.high > self.low, self.high - self.low, 1.0)
        return np.where(self.mask, np.clip(2.0 * (a - self.low) / span - 1.0, -1.0, 1.0), a)


def normalize_masked(x: np.ndarray, low: np.ndarray, high: np.ndarray, mask: np.ndarray, eps: float) -> np.ndarray:
    """OFT's proprio normalisation: ``clip(2 (x - low) / (high - low + eps) - 1, -1, 1)`` where ``mask``, else x
    (clipped too)."""
    x = np.asarray(x, dtype=np.float64)
    return np.clip(np.where(mask, 2.0 * (x - low) / (high - low + eps) - 1.0, x), -1.0, 1.0)


PROPRIO_SPAN_FLOOR = 0.02  # a near-constant proprio dimension (e.g. a quaternion component jittering by
# 1e-4) is not blown up into noise of unit size: its span counts as at least this much


def normalize_bounds(x: np.ndarray, low: np.ndarray, high: np.ndarray, floor: float = PROPRIO_SPAN_FLOOR) -> np.ndarray:
    """Map [low, high] to [-1, 1] (clipped), with spans below ``floor`` widened to it around their centre."""
    x, low, high = (np.asarray(v, dtype=np.float64) for v in (x, low, high))
    centre, half = (low + high) / 2.0, np.maximum(high - low, floor) / 2.0
    return np.clip((x - centre) / half, -1.0, 1.0)
