"""Each building block on hand-built inputs whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_pruner_ros.model import preset
from vla_pruner_ros.model.interface import Layout, SelectionInput
from vla_pruner_ros.pruning import TemporalState, TickContext, build_pruner
from vla_pruner_ros.pruning.hybrid import deadline_ratio
from vla_pruner_ros.pruning.scores import (
    decaying_window,
    greedy_max_min,
    mask_iou,
    motion_energy,
    smooth_grid,
    sobel_prior,
    union_then_diversity,
    update_motion,
    update_phase,
    window_weights,
)
from vla_pruner_ros.pruning.state import APPROACH, INTERACTION, CameraState


def test_union_then_diversity_picks_the_expected_set():
    e = torch.tensor([[1.0, 0, 0], [0.99, 0.1, 0], [0, 1.0, 0], [0, 0, 1.0], [0.7, 0.7, 0], [0.5, 0.5, 0.5]])
    # Candidates {0,1,2} ∪ {1,3,4} = {0,1,2,3,4}; token 5 is not a candidate.
    # Seed: 3, whose nearest candidate is farthest (all at distance 1). Then 0 (tie at distance 1 with
    # 1, 2, 4: lowest index). Then 2 (distance 1 to both; 1 is almost 0 itself, 4 is 0.29 from 0).
    chosen = union_then_diversity([np.array([0, 1, 2]), np.array([1, 3, 4])], e, 3)
    assert chosen.tolist() == [0, 2, 3]
    # No filtering when the union fits the budget.
    assert union_then_diversity([np.array([4, 1]), np.array([1, 4])], e, 3).tolist() == [1, 4]


def test_greedy_max_min_on_a_line():
    x = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    d = np.abs(x[:, None] - x[None, :])
    # Nearest-neighbour distances: 0.1, 0.1, 0.4, 0.1, 0.1 -> seed 2; then 0 (0.5, tie with 4: lower index); then 4.
    assert greedy_max_min(d, 3).tolist() == [2, 0, 4]
    assert greedy_max_min(d, 9).tolist() == [0, 1, 2, 3, 4]


def test_window_weights_and_normalisation_follow_the_formula():
    assert np.allclose(window_weights(3, 0.8), [0.512, 0.64, 0.8])  # oldest first; the latest weighs most
    s1, s2, s3 = np.array([1.0, 0, 0, 0]), np.array([0, 2.0, 0, 0]), np.array([0, 0, 0, 4.0])
    est = decaying_window([s1, s2, s3], 0.8)
    raw = 0.512 * s1 / 1 + 0.64 * s2 / 2 + 0.8 * s3 / 4
    assert np.allclose(est, raw / raw.sum()) and np.isclose(est.sum(), 1.0)
    assert est[3] > est[1] > est[0]


def test_sobel_prior_peaks_on_a_drawn_edge():
    grey = np.zeros((64, 64), np.float32)
    grey[:, 36:] = 1.0  # vertical edge between pixel columns 35 and 36: grid column 4 of 8
    prior = sobel_prior(grey, 8).reshape(8, 8)
    assert prior.max() == 1.0
    assert set(np.argwhere(prior == prior.max())[:, 1]) == {4}
    assert np.all(prior[:, [0, 1, 2, 6, 7]] == 0)


def _square(x: int) -> np.ndarray:
    g = np.zeros((64, 64), np.float32)
    g[24:40, x:x + 16] = 1.0
    return g


def test_motion_prior_is_zero_when_static_and_peaks_where_the_square_moves():
    cam = CameraState()
    for _ in range(4):
        acc = update_motion(cam, _square(8), decay=0.7, kernel=3, sigma=1.0)
    assert np.all(acc == 0)
    cam = CameraState()
    for x in (8, 12, 20):  # accelerating: the second-order difference is non-zero
        acc = update_motion(cam, _square(x), decay=0.7, kernel=3, sigma=1.0)
    assert acc.max() > 0
    y, x = np.unravel_index(np.argmax(acc), acc.shape)
    assert 20 <= y < 40 and 4 <= x < 40
    assert acc[:16].max() < 0.05 * acc.max() and acc[:, 48:].max() < 0.05 * acc.max()
    # Morphological opening removes single-pixel noise.
    noise = np.zeros((64, 64), np.float32)
    noise[10, 10] = 1.0
    assert motion_energy(noise, [np.zeros_like(noise)] * 2, kernel=3, sigma=0).max() == 0


def test_phase_flips_at_theta_with_hysteresis():
    state = TemporalState()
    seen = []
    for iou in [0.04, 0.05, 0.06, 0.02, 0.07, 0.08, 0.01, 0.5, 0.0, 0.0, 0.0]:
        seen.append(update_phase(state, iou, theta=0.05, enter_ticks=2, exit_ticks=3))
    A, X = APPROACH, INTERACTION
    # 0.05 is not above theta; one tick above is not enough; two consecutive are; three below to leave.
    assert seen == [A, A, A, A, A, X, X, X, X, X, A]


def test_mask_iou_and_smoothing():
    a = np.array([1, 1, 0, 0], bool)
    b = np.array([0, 1, 1, 0], bool)
    assert mask_iou(a, b) == pytest.approx(1 / 3) and mask_iou(a & False, b & False) == 0.0
    impulse = np.zeros(64, np.float32)
    impulse[27] = 1.0
    sm = smooth_grid(impulse, 8, 1.0)
    assert np.argmax(sm) == 27 and sm[26] == pytest.approx(sm[28]) and sm.sum() == pytest.approx(1.0, rel=2e-2)


def _selection(attention: np.ndarray, m: int = 64) -> SelectionInput:
    layout = Layout(1 + m + 5, ((1, 1 + m),), None, (1 + m, 1 + m + 5), (1 + m + 5,) * 2)
    emb = torch.randn(1, m, 8, generator=torch.Generator().manual_seed(0))
    return SelectionInput(layout, emb, emb, torch.as_tensor(attention, dtype=torch.float32).unsqueeze(0))


def _hybrid_phase_run(**params) -> tuple[list[float], list[int], list[str]]:
    """Five ticks: motion elsewhere, then on the attended block for three ticks, then elsewhere."""
    cfg = preset("tiny")  # 8 x 8 grid, 64 tokens, 4 layers
    pruner = build_pruner("hybrid", keep_ratio=0.75, layer=2, enter_ticks=2, exit_ticks=1, **params)
    state = pruner.new_state()
    region = np.zeros(64, np.float32)
    region[[18, 19, 26, 27]] = 1.0  # semantic attention and motion on the same 2 x 2 patch block
    elsewhere = np.zeros(64, np.float32)
    elsewhere[[60, 61, 62, 63]] = 1.0
    ratios, kept, phases = [], [], []
    for motion in (elsewhere, region, region, region, elsewhere):
        ctx = TickContext(cfg, state, None, 1.0, priors=[{"edge": np.linspace(0, 1, 64), "motion": motion}])
        kept.append(pruner._select_all(ctx, _selection(region)).shape[1])  # phase update, then selection
        ratios.append(ctx.keep_ratio)
        phases.append(state.phase)
    return ratios, kept, phases


def test_hybrid_budget_follows_the_phase():
    ratios, kept, phases = _hybrid_phase_run(interaction_keep_ratio=0.25)
    assert phases == [APPROACH, APPROACH, INTERACTION, INTERACTION, APPROACH]
    assert ratios == [0.75, 0.75, 0.25, 0.25, 0.75]
    assert kept == [48, 48, 16, 16, 48]
    # by default the interaction phase keeps the approach budget (halving it lost grasps in closed loop), so the
    # phase changes nothing and is not tracked: no motion prior, no masks, the phase stays approach
    ratios, kept, phases = _hybrid_phase_run()
    assert phases == [APPROACH] * 5
    assert ratios == [0.75] * 5 and kept == [48] * 5
    cfg = preset("tiny")
    for params, computes_motion in (({}, False), ({"interaction_keep_ratio": 0.25}, True)):
        pruner = build_pruner("hybrid", keep_ratio=0.75, layer=2, **params)
        ctx = TickContext(cfg, pruner.new_state(), [np.zeros((64, 64, 3), np.uint8)] * cfg.num_cameras, 0.75)
        pruner.prepare(ctx)
        assert ("motion" in ctx.priors[0]) is computes_motion and len(ctx.state.camera(0).frames) == computes_motion


def test_vla_iap_protects_anchors_and_keeps_the_interaction_region():
    pruner = build_pruner("vla_iap", keep_ratio=0.25)
    edge = np.zeros(64)
    edge[0] = 1.0  # the strongest edge patch is an anchor (anchor_ratio 0.1 -> 6 anchors, edge order)
    semantic = np.zeros(64)
    semantic[[18, 19, 26, 27]] = 1.0
    motion = np.zeros(64)
    motion[[27, 28]] = 1.0
    key = pruner.ranking(semantic, {"edge": edge, "motion": motion}, 16, INTERACTION)
    top = set(np.argsort(-key, kind="stable")[:16].tolist())
    assert {0, 18, 19, 26, 27, 28} <= top
    approach = pruner.ranking(semantic, {"edge": edge, "motion": motion}, 16, APPROACH)
    # While approaching, a token weak in both priors ranks below every token strong in one of them.
    double_weak = [i for i in range(64) if semantic[i] == 0 and motion[i] == 0 and i not in np.argsort(-edge)[:6]]
    assert approach[double_weak].max() < approach[[18, 28]].min()


def test_deadline_ratio_from_the_latency_model():
    history = [(64, 20 + 0.5 * 64), (128, 20 + 0.5 * 128), (64, 52.0)]
    assert deadline_ratio(history, 256, 60.0) == pytest.approx(80 / 256)
    assert deadline_ratio([], 256, 60.0) is None
    assert deadline_ratio([(100, 50.0)], 200, 25.0) == pytest.approx(0.25)  # proportional before a fit


def test_cover_fills_the_grid_farthest_first():
    from vla_pruner_ros.pruning.scores import cover

    assert list(cover(np.array([], int), 1, 4)) == [10]  # the centre patch (2, 2) first
    corners = cover(np.array([0]), 4, 4)  # from the top-left corner: the opposite corner, then the others
    assert list(corners) == [0, 3, 12, 15]
    spread = cover(np.array([5, 6]), 8, 12)
    assert len(spread) == 8 and {5, 6} <= set(spread) and len(set(spread)) == 8
    rows, cols = np.divmod(spread, 12)
    assert rows.max() - rows.min() >= 9 and cols.max() - cols.min() >= 9  # it spans the grid
    assert list(cover(np.array([3, 1, 2]), 2, 4)) == [1, 2]  # more chosen than k: cut to k
