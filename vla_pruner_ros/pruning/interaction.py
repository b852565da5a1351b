"""VLA-IAP's priors and interaction phase, shared by ``vla_iap`` and ``hybrid``.

Per camera and tick: a geometric prior G (Sobel edges), a motion prior M (second-order frame
difference, cleaned, accumulated), a semantic prior S (text-to-vision attention, smoothed over the
patch grid). The IoU of the thresholded S and M masks, over all cameras, drives the phase:
approach (IoU <= theta) or interaction (IoU > theta), with hysteresis.

Choices the paper leaves open (arXiv 2603.22991 publishes theta = 0.05 and k = 0.5 only):

- working resolution of the image priors: ``work_px_per_patch`` (8) pixels per patch side, i.e.
  128 x 128 for a 16 x 16 grid; Sobel kernel 3;
- motion clean-up: grey-level opening then closing with a ``morph_kernel`` (3) elliptic element,
  Gaussian blur with ``motion_sigma`` (1.0 working pixels); accumulation
  ``A_t = motion_decay * A_{t-1} + D_t`` with ``motion_decay`` 0.7 (a half-life of about two ticks);
- semantic smoothing: Gaussian with ``semantic_sigma`` (1.0 patches) on the grid;
- masks: a token is in the S mask if ``S >= semantic_threshold * max S`` (0.5), in the M mask if
  ``M >= motion_threshold * max M`` (0.3); no motion yet means an empty M mask and IoU 0;
- hysteresis: ``enter_ticks`` (2) consecutive ticks above theta to enter interaction,
  ``exit_ticks`` (3) at or below it to leave.
"""

from __future__ import annotations

import numpy as np

from .base import TickContext
from .config import InteractionConfig
from .errors import PrunerConfigError
from .scores import (
    mask_iou,
    normalise_max,
    pool_to_grid,
    relative_mask,
    smooth_grid,
    sobel_prior,
    to_grey,
    update_motion,
    update_phase,
)


def image_priors(ctx: TickContext, cfg: InteractionConfig, motion: bool = True) -> None:
    """Geometric (and, with ``motion``, motion) priors per camera into ``ctx.priors``; the motion
    prior updates the camera's motion state."""
    grid = ctx.model_config.grid
    size = grid * cfg.work_px_per_patch
    ctx.priors = []
    for c in range(ctx.model_config.num_cameras):
        if ctx.images is None:
            raise PrunerConfigError("this method needs the camera images; the tick has none")
        grey = to_grey(ctx.images[c], size)
        priors = {"edge": sobel_prior(grey, grid)}
        if motion:
            field = update_motion(ctx.state.camera(c), grey, cfg.motion_decay, cfg.morph_kernel, cfg.motion_sigma)
            priors["motion"] = normalise_max(pool_to_grid(field, grid))
        ctx.priors.append(priors)


def semantic_prior(attention_row: np.ndarray, grid: int, sigma: float) -> np.ndarray:
    """Text-to-vision attention of one camera, smoothed over the grid, scaled to max 1."""
    return normalise_max(np.maximum(smooth_grid(attention_row.astype(np.float32), grid, sigma), 0.0))


def update_interaction(ctx: TickContext, cfg: InteractionConfig, attention: np.ndarray) -> str:
    """Semantic priors per camera (from batch row 0's attention (M_total,)), then IoU and phase."""
    grid = ctx.model_config.grid
    per_cam = grid * grid
    s_masks, m_masks = [], []
    for c, priors in enumerate(ctx.priors):
        priors["semantic"] = semantic_prior(attention[c * per_cam:(c + 1) * per_cam], grid, cfg.semantic_sigma)
        s_masks.append(relative_mask(priors["semantic"], cfg.semantic_threshold))
        m_masks.append(relative_mask(priors["motion"], cfg.motion_threshold))
    iou = mask_iou(np.concatenate(s_masks), np.concatenate(m_masks))
    return update_phase(ctx.state, iou, cfg.theta, cfg.enter_ticks, cfg.exit_ticks)


def anchors(edge: np.ndarray, ratio: float, limit: int) -> np.ndarray:
    """The tokens strongest in edges: ``round(ratio * M)`` of them, at most ``limit``."""
    n = min(limit, max(1, int(round(ratio * edge.shape[0]))))
    return np.argsort(-edge, kind="stable")[:n]
