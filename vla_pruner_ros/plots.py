"""Figures shared by replay and the simulator's evaluation: replay plots (matplotlib, PNG), kept-token
overlays (PNG files or one MP4) and strips of kept tokens."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:  # a type only: the simulator draws strips without importing replay
    from .replay.replayer import MethodRun


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(runs: dict[str, MethodRun], reference: tuple[np.ndarray, np.ndarray] | None, names: tuple[str, ...],
                out_dir: str | Path, t0: float) -> list[Path]:
    """actions.png (every executed step per dimension, per method, against the reference; dimensions
    constant throughout are left out and named in the title), latency.png and tokens.png (per chunk)."""
    plt = _pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    executed = {name: (np.array([t for t, _, _ in run.executed]) - t0, np.array([a for _, _, a in run.executed]))
                for name, run in runs.items() if run.executed}
    series = [a for _, a in executed.values()] + ([reference[1]] if reference is not None else [])
    shown = [d for d in range(len(names)) if any(np.ptp(a[:, d]) > 1e-9 for a in series)] or [0]
    constant = [names[d] for d in range(len(names)) if d not in shown]
    fig, axes = plt.subplots(len(shown), 1, figsize=(10, 1.8 * len(shown)), sharex=True, squeeze=False)
    for d, ax in zip(shown, axes[:, 0], strict=True):
        for name, (times, actions) in executed.items():
            ax.plot(times, actions[:, d], label=name, lw=1, drawstyle="steps-post")
        if reference is not None:
            ax.plot(reference[0] - t0, reference[1][:, d], "k--", lw=1, label="reference", drawstyle="steps-post")
        ax.set_ylabel(names[d])
    if constant:
        fig.suptitle(f"executed steps; constant throughout, not shown: {', '.join(constant)}", fontsize=8)
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=4)
    axes[-1, 0].set_xlabel("bag time (s)")
    fig.tight_layout()
    written.append(_save(fig, out_dir / "actions.png", plt))
    for fname, key, label in (("latency.png", "latency", "tick latency (ms)"), ("tokens.png", "tokens",
                                                                                 "visual tokens kept")):
        fig, ax = plt.subplots(figsize=(10, 3.5))
        for name, run in runs.items():
            xs = [c.stamp - t0 for c in run.chunks]
            ys = [c.stats.latency_ms["total"] if key == "latency" else sum(c.stats.tokens_kept) for c in run.chunks]
            ax.plot(xs, ys, label=name, lw=1, marker=".", ms=3)
        ax.set_xlabel("bag time (s)")
        ax.set_ylabel(label)
        ax.legend(fontsize=7, ncol=4)
        fig.tight_layout()
        written.append(_save(fig, out_dir / fname, plt))
    return written


def _save(fig, path: Path, plt) -> Path:
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def overlay(frame: np.ndarray, kept: np.ndarray | None, grid: int, scale: int = 4) -> np.ndarray:
    """The frame (enlarged) with pruned patches dimmed and kept patches outlined; RGB uint8."""
    size = grid * max(1, (frame.shape[0] * scale) // grid)
    img = cv2.resize(frame, (size, size), interpolation=cv2.INTER_NEAREST)
    if kept is None:
        return img
    cell = size // grid
    mask = np.zeros((grid, grid), bool)
    mask.reshape(-1)[np.asarray(kept, int)] = True
    dim = (img * 0.3).astype(np.uint8)
    full = np.kron(mask, np.ones((cell, cell), bool))[:size, :size]
    out = np.where(full[..., None], img, dim)
    for idx in np.asarray(kept, int):
        r, c = divmod(int(idx), grid)
        cv2.rectangle(out, (c * cell, r * cell), (c * cell + cell - 1, r * cell + cell - 1), (255, 220, 0), 1)
    return out


def strip(frames: list[tuple[np.ndarray, np.ndarray | None]], grid: int, scale: int = 2, limit: int = 12,
          gap: int = 4) -> np.ndarray:
    """(frame, kept tokens) pairs as overlays side by side, white between them; at most ``limit``,
    spread evenly over the list (the first and the last always shown). RGB uint8."""
    if not frames:
        raise ValueError("no frames to put in a strip")
    picks = np.unique(np.linspace(0, len(frames) - 1, min(limit, len(frames))).round().astype(int))
    tiles = [overlay(frames[i][0], frames[i][1], grid, scale) for i in picks]
    h = tiles[0].shape[0]
    space = np.full((h, gap, 3), 255, np.uint8)
    return np.concatenate([t if k == 0 else np.concatenate([space, t], 1) for k, t in enumerate(tiles)], 1)


def write_overlays(runs: dict[str, MethodRun], frames: list[tuple[float, np.ndarray | None]], grid: int,
                   target: str | Path, fps: float = 5.0) -> list[Path]:
    """Per method and planned chunk, the source frame with its kept tokens: ``target/<method>/*.png``,
    or one ``<target stem>_<method>.mp4`` per method if ``target`` ends in .mp4."""
    target = Path(target)
    written = []
    for name, run in runs.items():
        images = []
        for c in run.chunks:
            if 0 <= c.frame_index < len(frames) and frames[c.frame_index][1] is not None:
                kept = None if c.kept_tokens is None else c.kept_tokens[0]
                images.append((c, overlay(frames[c.frame_index][1], kept, grid)))
        if not images:
            continue
        if target.suffix.lower() == ".mp4":
            path = target.with_name(f"{target.stem}_{name}.mp4")
            path.parent.mkdir(parents=True, exist_ok=True)
            h, w = images[0][1].shape[:2]
            video = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            for _, img in images:
                video.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            video.release()
            written.append(path)
        else:
            folder = target / name
            folder.mkdir(parents=True, exist_ok=True)
            for c, img in images:
                path = folder / f"chunk_{c.tick:05d}.png"
                cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
                written.append(path)
    return written
