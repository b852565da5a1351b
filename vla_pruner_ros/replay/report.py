"""The replay report: per method latency, tokens, phases, deviation from ``none`` and error against
recorded reference actions, as JSON and as a printed table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .bag import BagMessage
from .replayer import MethodRun


def reference_actions(messages: list[BagMessage], topic: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(times, first-step actions) of a recorded action topic (JointTrajectory), in time order."""
    if topic is None:
        return None
    rows = [(m.time, np.asarray(m.msg.points[0].positions, float)) for m in messages
            if m.topic == topic and len(m.msg.points)]
    if not rows:
        return None
    return np.array([r[0] for r in rows]), np.stack([r[1] for r in rows])


def _reference_at(ref: tuple[np.ndarray, np.ndarray], t: float) -> np.ndarray | None:
    times, actions = ref
    j = int(np.searchsorted(times, t + 1e-9)) - 1
    return actions[j] if j >= 0 else None


def _mean_abs(rows: list[np.ndarray]) -> list[float] | None:
    return np.mean(np.abs(np.stack(rows)), axis=0).round(6).tolist() if rows else None


def build_report(runs: dict[str, MethodRun], reference: tuple[np.ndarray, np.ndarray] | None,
                 meta: dict[str, Any], dt: float) -> dict[str, Any]:
    """Per method: latency, speedup versus ``none`` (same run), tokens kept, phase timeline, deviation
    from ``none`` on the chunks planned from the same frames, error against the reference actions
    (first step, and each chunk step against the reference at that step's time)."""
    base = runs.get("none")
    base_by_stamp = {(c.episode, c.stamp): c for c in base.chunks} if base else {}
    base_p50 = float(np.median([c.stats.latency_ms["total"] for c in base.chunks])) if base and base.chunks else None
    out: dict[str, Any] = {"meta": meta, "methods": {}}
    for name, run in runs.items():
        lat = [c.stats.latency_ms["total"] for c in run.chunks]
        p50 = float(np.median(lat)) if lat else None
        phases, last = [], None
        for c in run.chunks:
            if c.stats.phase != last:
                phases.append([round(c.t, 3), c.stats.phase])
                last = c.stats.phase
        first_dev, chunk_dev = [], []
        for c in run.chunks:
            b = base_by_stamp.get((c.episode, c.stamp))
            if b is not None and b.actions.shape == c.actions.shape:
                first_dev.append(c.actions[0] - b.actions[0])
                chunk_dev.append(np.mean(np.abs(c.actions - b.actions), axis=0))
        first_err, chunk_err = [], []
        if reference is not None:
            for c in run.chunks:
                r0 = _reference_at(reference, c.stamp)
                if r0 is None:
                    continue
                first_err.append(c.actions[0] - r0)
                refs = [_reference_at(reference, c.stamp + i * dt) for i in range(len(c.actions))]
                chunk_err.append(np.mean(np.abs(np.stack([c.actions[i] - r for i, r in enumerate(refs)])), axis=0))
        record = {
            "ticks": run.ticks, "chunks": len(run.chunks), "episodes": run.episodes,
            "latency_ms": {"p50": round(p50, 2) if p50 else None,
                           "p95": round(float(np.percentile(lat, 95)), 2) if lat else None},
            "speedup_vs_none": round(base_p50 / p50, 3) if base_p50 and p50 else None,
            "visual_tokens_kept": {"mean": round(float(np.mean([sum(c.stats.tokens_kept) for c in run.chunks])), 2)
                                   if run.chunks else None,
                                   "of": sum(run.chunks[0].stats.tokens_total) if run.chunks else None},
            # the budget the method really spent: tokens kept / tokens, over every chunk
            "effective_keep": round(sum(sum(c.stats.tokens_kept) for c in run.chunks)
                                    / sum(sum(c.stats.tokens_total) for c in run.chunks), 4) if run.chunks else None,
            "llm_flops_ratio": round(float(np.mean([c.stats.llm_flops_ratio for c in run.chunks])), 4)
            if run.chunks else None,
            "phase_timeline": phases,
            "deviation_from_none": None if name == "none" or not first_dev else {
                "first_step_per_dim": _mean_abs(first_dev), "chunk_per_dim": _mean_abs(chunk_dev),
                "first_step": round(float(np.mean(np.abs(np.stack(first_dev)))), 6),
                "chunk": round(float(np.mean(np.stack(chunk_dev))), 6), "chunks_compared": len(first_dev)},
            "error_vs_reference": None if not first_err else {
                "first_step_per_dim": _mean_abs(first_err), "chunk_per_dim": _mean_abs(chunk_err),
                "first_step": round(float(np.mean(np.abs(np.stack(first_err)))), 6),
                "chunk": round(float(np.mean(np.stack(chunk_err))), 6), "chunks_compared": len(first_err)},
            "counters": run.counters, "warnings": run.warnings, "wall_s": round(run.wall_s, 2),
        }
        out["methods"][name] = record
    return out


def format_table(report: dict[str, Any]) -> str:
    def num(x: float | None, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    cols = (f"{'method':<11} {'chunks':>6} {'p50 ms':>8} {'p95 ms':>8} {'speedup':>8} {'tokens':>9} {'eff keep':>8} "
            f"{'dev 1st':>9} {'dev chunk':>9} {'err 1st':>9} {'err chunk':>9} {'phases':>6}")
    lines = [cols, "-" * len(cols)]
    for name, r in report["methods"].items():
        dev = r["deviation_from_none"] or {}
        err = r["error_vs_reference"] or {}
        tok = r["visual_tokens_kept"]
        tokens = "-" if tok["mean"] is None else f"{tok['mean']:.0f}/{tok['of']}"
        speed = "-" if r["speedup_vs_none"] is None else f"{r['speedup_vs_none']:.2f}x"
        lat = r["latency_ms"]
        lines.append(
            f"{name:<11} {r['chunks']:>6d} {num(lat['p50'], '.1f'):>8} {num(lat['p95'], '.1f'):>8} {speed:>8} "
            f"{tokens:>9} {num(r['effective_keep'], '.3f'):>8} "
            f"{num(dev.get('first_step'), '.4f'):>9} {num(dev.get('chunk'), '.4f'):>9} "
            f"{num(err.get('first_step'), '.4f'):>9} {num(err.get('chunk'), '.4f'):>9} {len(r['phase_timeline']):>6d}")
    return "\n".join(lines)


def write_json(path: str | Path, report: dict[str, Any]) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)
