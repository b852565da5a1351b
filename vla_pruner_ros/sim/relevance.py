"""Where do the selection scores point? ``vla-pruner sim relevance``.

The model drives its own closed-loop episodes unpruned. At every planned tick, for each camera, each
score a method selects by is ranked, and the top budget (a keep ratio of the camera's patches) is
compared with what the simulator renders there (MuJoCo segmentation, pooled to the patch grid): the
share of the named object's, the plate's and the gripper's patches among the kept ones (recall; a
random selection keeps the keep ratio of each part on average), and the spatial coverage (mean
distance, in patches, from a patch to the nearest kept one; random keeps it low).

Scores: ``semantic`` (the last prompt row's attention at layer K-1, what fastv, vla_pruner and hybrid
read), ``action`` (the decaying window of previous ticks' action-query attention, vla_pruner's and
hybrid's second candidate set; absent on an episode's first tick), ``edge`` (the Sobel prior of
VLA-IAP and hybrid's anchors). Ticks are split by phase: ``reach`` (the named object not yet held)
and ``held``.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict

import cv2
import numpy as np

from ..factory import build_policy, load_settings_model
from ..pruning.scores import decaying_window, sobel_prior, to_grey
from ..pruning.vla_pruner import VLAPruner
from .driver import PolicyDriver, sim_settings
from .env import TabletopEnv
from .evaluate import choose_tasks

PARTS = ("object", "plate", "gripper")
SCORES = ("semantic", "action", "edge", "random")
GRIPPER_BODIES = ("hand", "finger_l", "finger_r")


def patch_masks(env: TabletopEnv, camera: str, grid: int, min_share: float = 0.2) -> dict[str, np.ndarray]:
    """Per part, the patches (grid * grid,) at least ``min_share`` of whose pixels show it."""
    r = env.renderer
    r.enable_segmentation_rendering()
    try:
        r.update_scene(env.data, camera=camera)
        seg = r.render()[..., 0].copy()  # geom id per pixel, -1 for none
    finally:
        r.disable_segmentation_rendering()
    model = env.model
    bodies = {model.body(b).id for b in GRIPPER_BODIES}
    geoms = {"object": [model.geom(env.target.name).id], "plate": [model.geom("plate").id],
             "gripper": [g for g in range(model.ngeom) if int(model.geom_bodyid[g]) in bodies]}
    out = {}
    for part, ids in geoms.items():
        share = cv2.resize(np.isin(seg, ids).astype(np.float32), (grid, grid), interpolation=cv2.INTER_AREA)
        out[part] = share.reshape(-1) >= min_share
    return out


class _ScoreRecorder(VLAPruner):
    """vla_pruner at keep 1.0 (the model runs unpruned) that keeps the scores it would select by."""

    def on_selection(self, ctx, inp) -> None:
        att = inp.attention[0].float().cpu().numpy()
        per_cam = att.shape[0] // ctx.model_config.num_cameras
        self.semantic = [att[c * per_cam:(c + 1) * per_cam] for c in range(ctx.model_config.num_cameras)]
        self.action = []
        for c in range(ctx.model_config.num_cameras):
            history = list(ctx.state.camera(c).attention)
            self.action.append(decaying_window(history, self.config.gamma) if history else None)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-scores, kind="stable")[:k]


def _coverage(kept: np.ndarray, grid: int) -> float:
    """Mean distance (patches) from each patch to its nearest kept patch."""
    ys, xs = np.divmod(np.arange(grid * grid), grid)
    ky, kx = np.divmod(kept, grid)
    d = np.sqrt((ys[:, None] - ky[None]) ** 2 + (xs[:, None] - kx[None]) ** 2)
    return float(d.min(axis=1).mean())


def relevance(model_path: str, episodes: int, keeps: tuple[float, ...] = (0.25, 0.125), seed: int = 0,
              split: str = "eval", families: tuple[str, ...] = ("pick", "push", "place"), progress=None) -> dict:
    """{"meta": ..., "rows": [{camera, keep, score, phase, recall: {part: share}, coverage, ticks}]}."""
    settings = sim_settings(model_path)
    model, tokenizer = load_settings_model(settings)
    cfg = model.config
    recorder_settings = dataclasses.replace(settings, pruning=dataclasses.replace(settings.pruning,
                                                                                     method="vla_pruner",
                                                                                     keep_ratio=1.0))
    policy = build_policy(recorder_settings, model, tokenizer)
    recorder = _ScoreRecorder(policy.pruner.config)
    policy.pruner = recorder
    driver = PolicyDriver(policy, settings)
    cameras = ["front", "wrist"][:cfg.num_cameras]
    env = TabletopEnv(control_hz=settings.control.rate_hz, wrist=cfg.num_cameras > 1)
    grid, rng = cfg.grid, np.random.default_rng(seed)
    sums: dict = defaultdict(lambda: {"recall": defaultdict(list), "coverage": [], "ticks": 0})
    tasks = [t for f in families for t in choose_tasks(f, split, episodes, seed)]
    start = time.time()
    try:
        for i, task in enumerate(tasks):
            obs = env.reset(seed * 100_000 + 50_000 + i % episodes, task)
            driver.reset(task.instruction)
            done = False
            while not done:
                masks = [patch_masks(env, cam, grid) for cam in cameras]
                phase = "held" if env.held(env.target.name) else "reach"
                frames = obs.images
                action, plan = driver.act(obs)
                if plan is not None:
                    for c, cam in enumerate(cameras):
                        scores = {"semantic": recorder.semantic[c], "action": recorder.action[c],
                                  "edge": sobel_prior(to_grey(frames[c], grid * 8), grid),
                                  "random": rng.random(grid * grid)}
                        for keep in keeps:
                            k = max(1, round(keep * grid * grid))
                            for name, s in scores.items():
                                if s is None:
                                    continue
                                kept = _top(np.asarray(s, float), k)
                                row = sums[(cam, keep, name, phase)]
                                row["ticks"] += 1
                                row["coverage"].append(_coverage(kept, grid))
                                for part, mask in masks[c].items():
                                    if mask.any():
                                        row["recall"][part].append(float(mask[kept].sum() / mask.sum()))
                obs, _, done = env.step(action)
            if progress:
                progress(i + 1, len(tasks), time.time() - start)
    finally:
        env.close()
    rows = []
    for (cam, keep, name, phase), v in sorted(sums.items(), key=lambda kv: (kv[0][0], -kv[0][1], SCORES.index(
            kv[0][2]), kv[0][3])):
        rows.append({"camera": cam, "keep": keep, "score": name, "phase": phase, "ticks": v["ticks"],
                     "recall": {p: round(float(np.mean(v["recall"][p])), 3) if v["recall"][p] else None
                                for p in PARTS},
                     "coverage": round(float(np.mean(v["coverage"])), 3)})
    return {"meta": {"model": model_path, "episodes_per_family": episodes, "seed": seed, "split": split,
                     "layer": cfg.prune_layer, "grid": grid, "seconds": round(time.time() - start, 1)},
            "rows": rows}


def markdown(rep: dict) -> str:
    lines = ["| camera | keep | score | phase | ticks | object | plate | gripper | coverage (patches) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rep["rows"]:
        cells = [f"{100 * r['recall'][p]:.0f}%" if r["recall"][p] is not None else "-" for p in PARTS]
        lines.append(f"| {r['camera']} | {100 * r['keep']:.1f}% | {r['score']} | {r['phase']} | {r['ticks']} | "
                     + " | ".join(cells) + f" | {r['coverage']:.2f} |")
    return "\n".join(lines)
