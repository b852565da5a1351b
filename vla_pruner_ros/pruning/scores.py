"""Building blocks shared by the methods: diversity selection, the decaying attention window,
image priors (Sobel edges, second-order motion), grid smoothing, mask IoU and the phase tracker.

Image work uses OpenCV; everything is per camera and returns one score per visual patch in
row-major grid order (the order of the vision towers' patch tokens).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import torch

from .state import APPROACH, INTERACTION, CameraState, TemporalState


# ---- diversity --------------------------------------------------------------------------------
def cosine_distances(embeddings: torch.Tensor) -> np.ndarray:
    """Pairwise ``1 - cos`` (n, n) of embeddings (n, d), computed once and moved to the CPU."""
    e = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    return (1.0 - e @ e.T).cpu().numpy()


def greedy_max_min(distances: np.ndarray, k: int, seed: int | None = None) -> np.ndarray:
    """Greedy max-min diversity: indices (k,) into the n items of a distance matrix (n, n).

    Seed (unless given): the item whose nearest neighbour is farthest. Then repeatedly add the item
    whose minimum distance to the chosen set is largest. Ties go to the lowest index.
    """
    n = distances.shape[0]
    if k >= n:
        return np.arange(n)
    if seed is None:
        off_diag = distances + np.diag(np.full(n, np.inf))
        seed = int(np.argmax(off_diag.min(axis=1)))
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = seed
    min_dist = distances[seed].astype(np.float64)  # a copy; chosen items are -inf and stay so
    min_dist[seed] = -np.inf
    for j in range(1, k):
        nxt = int(min_dist.argmax())
        chosen[j] = nxt
        np.minimum(min_dist, distances[nxt], out=min_dist)
        min_dist[nxt] = -np.inf
    return chosen


def union_then_diversity(candidate_sets: list[np.ndarray], embeddings: torch.Tensor, k: int) -> np.ndarray:
    """VLA-Pruner's "combine then filter": C = union of the candidate sets; if |C| > k, greedy max-min
    diversity over the candidates' embeddings (n, d). Returns sorted indices (k,) (fewer if |C| < k)."""
    candidates = np.unique(np.concatenate(candidate_sets))
    if len(candidates) <= k:
        return candidates
    dist = cosine_distances(embeddings[torch.as_tensor(candidates, device=embeddings.device)])
    return np.sort(candidates[greedy_max_min(dist, k)])


@functools.cache
def grid_distances(grid: int) -> np.ndarray:
    """Pairwise Euclidean distances (n, n) between the patches of a grid x grid patch grid (read-only,
    computed once per grid size)."""
    ys, xs = np.divmod(np.arange(grid * grid), grid)
    dist = np.sqrt((ys[:, None] - ys[None]) ** 2 + (xs[:, None] - xs[None]) ** 2)
    dist.flags.writeable = False
    return dist


def cover(chosen: np.ndarray, k: int, grid: int) -> np.ndarray:
    """``chosen`` plus farthest-point sampling on the patch grid up to ``k`` patches: repeatedly the
    patch farthest from every patch chosen so far (the grid's centre first if none is). Sorted."""
    n = grid * grid
    chosen = np.unique(np.asarray(chosen, dtype=np.int64))
    if len(chosen) >= k:
        return chosen[:k] if len(chosen) > k else chosen
    dist = grid_distances(grid)
    seed = chosen if len(chosen) else np.array([(grid // 2) * grid + grid // 2])
    min_dist = dist[seed].min(axis=0)
    min_dist[seed] = -np.inf
    out = list(seed)
    while len(out) < min(k, n):
        nxt = int(min_dist.argmax())
        out.append(nxt)
        np.minimum(min_dist, dist[nxt], out=min_dist)
        min_dist[nxt] = -np.inf
    return np.sort(np.asarray(out[:k]))


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores (stable: ties go to the lower index)."""
    return np.argsort(-scores, kind="stable")[:k]


# ---- temporal action attention ----------------------------------------------------------------
def window_weights(n: int, gamma: float) -> np.ndarray:
    """Weights of the last n ticks, oldest first: gamma^n ... gamma^1 (the latest weighs most)."""
    return gamma ** np.arange(n, 0, -1, dtype=np.float64)


def decaying_window(history: list[np.ndarray], gamma: float) -> np.ndarray:
    """``S^(t) = sum_{i=1..w} gamma^i S(t-i)``, normalised to sum 1; ``history`` is oldest first and
    each entry is first normalised to sum 1 so every tick counts by its weight alone."""
    w = window_weights(len(history), gamma)
    est = np.zeros_like(history[0], dtype=np.float64)
    for weight, s in zip(w, history, strict=True):
        total = float(s.sum())
        est += weight * (s / total if total > 0 else s)
    total = est.sum()
    return est / total if total > 0 else est


# ---- image priors ---------------------------------------------------------------------------------
def to_grey(image: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> grey float32 (size, size) in [0, 1]."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if grey.shape != (size, size):
        grey = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)
    return grey.astype(np.float32) / 255.0


def pool_to_grid(field: np.ndarray, grid: int) -> np.ndarray:
    """Mean over each patch: (S, S) -> (grid * grid,) row-major."""
    return cv2.resize(field, (grid, grid), interpolation=cv2.INTER_AREA).reshape(-1)


def normalise_max(x: np.ndarray) -> np.ndarray:
    peak = float(x.max()) if x.size else 0.0
    return x / peak if peak > 0 else np.zeros_like(x)


def sobel_prior(grey: np.ndarray, grid: int) -> np.ndarray:
    """Geometric prior: Sobel gradient magnitude pooled to the patch grid, scaled to max 1."""
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return normalise_max(pool_to_grid(cv2.magnitude(gx, gy), grid))


def motion_energy(grey: np.ndarray, previous: list[np.ndarray], kernel: int, sigma: float) -> np.ndarray:
    """Second-order temporal difference ``|I_t - 2 I_{t-1} + I_{t-2}|`` cleaned up: grey-level
    opening (removes specks smaller than the kernel), closing (fills small holes), Gaussian blur.
    Zero until two previous frames exist."""
    if len(previous) < 2:
        return np.zeros_like(grey)
    diff = np.abs(grey - 2.0 * previous[-1] + previous[-2])
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel, kernel))
    diff = cv2.morphologyEx(diff, cv2.MORPH_OPEN, k)
    diff = cv2.morphologyEx(diff, cv2.MORPH_CLOSE, k)
    return cv2.GaussianBlur(diff, (0, 0), sigma) if sigma > 0 else diff


def update_motion(cam: CameraState, grey: np.ndarray, decay: float, kernel: int, sigma: float) -> np.ndarray:
    """Accumulate motion over ticks (``A_t = decay * A_{t-1} + D_t``); remember the frame. Returns A_t."""
    energy = motion_energy(grey, list(cam.frames), kernel, sigma)
    cam.motion = energy if cam.motion is None or cam.motion.shape != energy.shape else decay * cam.motion + energy
    cam.frames.append(grey)
    return cam.motion


def smooth_grid(scores: np.ndarray, grid: int, sigma: float) -> np.ndarray:
    """Gaussian smoothing of per-patch scores over the patch grid (sigma in patches)."""
    if sigma <= 0:
        return scores
    return cv2.GaussianBlur(scores.reshape(grid, grid).astype(np.float32), (0, 0), sigma).reshape(-1)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def relative_mask(x: np.ndarray, threshold: float) -> np.ndarray:
    """Tokens whose score is at least ``threshold`` times the peak (empty when the peak is 0)."""
    peak = float(x.max()) if x.size else 0.0
    return x >= threshold * peak if peak > 0 else np.zeros(x.shape, dtype=bool)


# ---- interaction phase ------------------------------------------------------------------------
def update_phase(state: TemporalState, iou: float, theta: float, enter_ticks: int, exit_ticks: int) -> str:
    """Hysteresis on ``IoU > theta``: enter the interaction phase after ``enter_ticks`` consecutive
    ticks above theta, return to approach after ``exit_ticks`` consecutive ticks at or below it."""
    state.iou = iou
    above = iou > theta
    wants_switch = above if state.phase == APPROACH else not above
    state.phase_count = state.phase_count + 1 if wants_switch else 0
    needed = enter_ticks if state.phase == APPROACH else exit_ticks
    if wants_switch and state.phase_count >= needed:
        state.phase = INTERACTION if state.phase == APPROACH else APPROACH
        state.phase_count = 0
    return state.phase
