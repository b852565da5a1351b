"""``vla-pruner probe``: does a training run find the named object, by episode step?

Reads a run directory (``checkpoint/`` + ``trainer_state.pt`` with the auxiliary scene head) and
recorded episodes, and reports per episode step the correlation between the positions the scene
head implies (its predicted offsets plus the hand position) and the true positions of the named
object (x, y, z) and the plate (x, y). Adding the hand position back removes what the proprio alone
explains, so a correlation near zero means the model does not find that object at all. At step 0
the hand has not moved yet, so there the target can only come from the image and the instruction;
later steps can also read it from where the hand has gone. With ``counterfactual``, each episode's
instruction names another object of its scene instead (see ``trainer.counterfactuals``) and the
target is that object: only a model that binds the words to the object scores there, since the
scene layout and the hand's heading point at the demonstrated one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..model import build_tokenizer, load_checkpoint
from .dataset import load_episodes
from .trainer import (
    SCENE_SCALE,
    Batches,
    SceneHead,
    TrainConfig,
    TrainError,
    action_rows,
    counterfactuals,
    load_trainer_state,
)

NAMES = ("target_x", "target_y", "target_z", "plate_x", "plate_y")


def probe(run_dir: str | Path, data_dir: str | Path, steps: tuple[int, ...] = (0, 3, 8),
          max_episodes: int = 60, counterfactual: bool = False) -> dict:
    """{step: {"episodes": n, "corr": {name: r}, "mse": {name: e}}} on up to ``max_episodes`` episodes."""
    run_dir = Path(run_dir)
    state_path = run_dir / "trainer_state.pt"
    if not state_path.exists():
        raise TrainError(f"{run_dir} holds no trainer_state.pt; give a `vla-pruner train --out` directory")
    state = load_trainer_state(state_path)
    if not state.get("scene_head"):
        raise TrainError(f"the run in {run_dir} was trained without the auxiliary scene head (aux_weight: 0)")
    model = load_checkpoint(run_dir / "checkpoint").eval()
    cfg = TrainConfig(**state["config"])
    head = SceneHead(model.config.llm_dim)
    head.load_state_dict(state["scene_head"])
    episodes = load_episodes(data_dir, cfg.image_size, resize=model.config.resize)
    episodes = [e for e in episodes if e.scene is not None][:max_episodes]
    if counterfactual:  # the first other object of each scene, where there is one
        episodes = [replace(e, instruction=alts[0][0],
                            scene=np.concatenate([e.objects[alts[0][1]] - e.proprio[:, :3], e.scene[:, 3:]], 1))
                    for e in episodes if (alts := counterfactuals(e))]
    if not episodes:
        raise TrainError(f"{data_dir} has no episodes with /scene topics{' (every object)' * counterfactual}; "
                         "record them with `vla-pruner sim record`")
    batches = Batches(episodes, build_tokenizer(), model.config, cfg)
    out = {}
    for step in steps:
        pred, true = [], []
        for items in batches.buckets.values():
            chosen = [(i, t) for i, t in items if t == step]
            if not chosen:
                continue
            batch = batches.make(chosen, None)
            hand = np.array([np.r_[episodes[i].proprio[t, :3], episodes[i].proprio[t, :2]] for i, t in chosen])
            with torch.no_grad():
                pred.append(head(action_rows(model, batch)).numpy() * SCENE_SCALE + hand)
            true.append(batch.scene.numpy() * SCENE_SCALE + hand)
        if not pred:
            continue
        p, t = np.concatenate(pred), np.concatenate(true)
        corr = {n: float(np.corrcoef(p[:, d], t[:, d])[0, 1]) if t[:, d].std() > 0 and p[:, d].std() > 0
                else float("nan") for d, n in enumerate(NAMES)}
        out[step] = {"episodes": len(p), "corr": corr,
                     "mse": {n: float(((p[:, d] - t[:, d]) ** 2).mean()) for d, n in enumerate(NAMES)}}
    return out


def table(result: dict) -> str:
    lines = ["| step | episodes | " + " | ".join(NAMES) + " |", "|---|---|" + "---|" * len(NAMES)]
    for step, r in result.items():
        lines.append(f"| {step} | {r['episodes']} | " + " | ".join(f"{r['corr'][n]:+.2f}" for n in NAMES) + " |")
    return "\n".join(lines)
