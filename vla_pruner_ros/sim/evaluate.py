"""``vla-pruner eval``: closed-loop task success of each pruning method in the simulator.

Every method and keep ratio runs the same seeded episodes (held-out colour/shape combinations by
default). Each control step goes through ``driver.PolicyDriver``: the same ``ControlCore`` the node
and replay use, on simulation time (a new chunk every ``control.replan_steps``, 2 by default as in
``settings.SIM_CONTROL``; 0 executes whole chunks open loop, as OpenVLA-OFT). Reported in the shape
of the papers' Table 1: success per task family and on average, success relative to the unpruned
model, LLM FLOPs, median tick latency and speedup versus unpruned measured in this run. With
``strips``, the first episodes of each family are also drawn as PNG strips: the frame of each
planned chunk with the tokens the method kept outlined and the pruned ones dimmed. With ``trace``,
every step of every episode goes to ``<method>_<keep>.csv`` (``failures.TRACE_COLUMNS``): the hand, the
named object and the plate from the simulator's privileged state next to the action executed, to
see where and how an episode failed.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SettingsError
from ..factory import build_policy, load_settings_model
from ..pruning import prunes_inside_llm
from ..sim_vocabulary import FAMILIES
from .driver import PolicyDriver, sim_settings
from .env import TabletopEnv
from .failures import TRACE_COLUMNS
from .record import choose_tasks


@dataclass
class MethodResult:
    method: str
    keep: float
    successes: dict[str, list[bool]] = field(default_factory=dict)
    latency_ms: list[float] = field(default_factory=list)
    flops: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    tokens_total: list[int] = field(default_factory=list)  # visual tokens before pruning, per plan
    plan_errors: int = 0  # plans that failed (reported in the log as they happened)

    def rate(self, family: str | None = None) -> float:
        vals = [v for f, vs in self.successes.items() if family in (None, f) for v in vs]
        return float(np.mean(vals)) if vals else float("nan")

    def stderr(self, family: str | None = None) -> float:
        vals = [v for f, vs in self.successes.items() if family in (None, f) for v in vs]
        p = self.rate(family)
        return math.sqrt(p * (1 - p) / len(vals)) if vals else float("nan")

    def outcomes(self) -> np.ndarray:
        return np.array([v for f in sorted(self.successes) for v in self.successes[f]], float)


def paired_difference(a: MethodResult, b: MethodResult) -> tuple[float, float]:
    """Mean success difference a - b over the same seeded episodes and its standard error (paired)."""
    return _paired(a.outcomes() - b.outcomes())


def _paired(d: np.ndarray) -> tuple[float, float]:
    """Mean of per-episode differences and its standard error (nan where undefined)."""
    if len(d) < 2:
        return float(d.mean()) if len(d) else float("nan"), float("nan")
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))


def run_episode(driver: PolicyDriver, env: TabletopEnv, task, seed: int, result: MethodResult,
                frames: list | None = None, trace: list | None = None, episode: int = 0) -> bool:
    """One closed-loop episode; ``frames`` (if given) collects (frame, kept tokens of camera 0) per plan,
    ``trace`` a row of ``TRACE_COLUMNS`` per step (``success``: after that step)."""
    obs = env.reset(seed, task)
    driver.reset(task.instruction)
    done, success = False, False
    while not done:
        action, plan = driver.act(obs)
        if trace is not None:
            name = env.target.name
            row = [task.family, episode, seed, env.steps, *obs.ee_position, *env.object_position(name),
                   *env.plate, env.gripper_opening(), int(env.held(name)), int(plan is not None), *action]
        if plan is not None:
            s = plan.chunk.stats
            result.latency_ms.append(s.latency_ms["total"])
            result.flops.append(s.llm_flops_ratio)
            result.tokens.append(sum(s.tokens_kept))
            result.tokens_total.append(sum(s.tokens_total))
            if frames is not None:
                kept = plan.chunk.kept_tokens
                frames.append((obs.image, None if kept is None else kept[0]))
        obs, success, done = env.step(action)
        if trace is not None:
            trace.append([*row, int(success)])
    return bool(success)


def evaluate(model_path: str, methods: tuple[str, ...], keeps: tuple[float, ...], episodes: int, seed: int = 0,
             split: str = "eval", families: tuple[str, ...] = FAMILIES, params: dict | None = None,
             layer: int | None = None, progress=None, strips: str | Path | None = None,
             strip_episodes: int = 1, trace: str | Path | None = None) -> dict:
    """``layer`` sets K for the methods that prune inside the LLM (those pruning before it keep K = 0).
    ``strips``: a folder for ``<family>_<episode>_<method>_<keep>.png`` of the first ``strip_episodes``
    episodes of each family (see ``plots.strip``); ``trace``: a folder for the per-step CSVs."""
    base = sim_settings(model_path, params)
    model, tokenizer = load_settings_model(base)
    # Frames at the simulator camera's own size (as recorded and as sim_node publishes); the policy
    # resizes them to the model's input exactly as it does for a real camera.
    env = TabletopEnv(control_hz=base.control.rate_hz, wrist=model.config.num_cameras > 1)
    configs = [("none", 1.0)] + [(m, k) for m in methods if m != "none" for k in keeps]
    tasks = {f: choose_tasks(f, split, episodes, seed) for f in families}
    results = []
    start = time.time()
    total = len(configs) * len(families) * episodes
    done = 0
    try:
        for method, keep in configs:
            # not set: build_policy applies the model's prune_layer (or the method's default K)
            k = layer if layer is not None and prunes_inside_llm(method) else None
            pruning = dataclasses.replace(base.pruning, method=method, keep_ratio=keep, layer=k)
            policy = build_policy(dataclasses.replace(base, pruning=pruning), model, tokenizer)
            driver = PolicyDriver(policy, base)
            r = MethodResult(method, keep)
            rows = [] if trace else None
            for f in families:
                r.successes[f] = []
                for i, task in enumerate(tasks[f]):
                    frames = [] if strips and i < strip_episodes else None
                    r.successes[f].append(run_episode(driver, env, task, seed * 100_000 + 50_000 + i, r, frames,
                                                      rows, i))
                    if frames:
                        _write_strip(Path(strips) / f"{f}_{i:03d}_{method}_{round(100 * keep)}.png", frames,
                                     model.config.grid)
                    done += 1
                    if progress:
                        progress(done, total, time.time() - start)
            r.plan_errors = driver.core.counters.plan_errors
            results.append(r)
            if trace:
                _write_trace(Path(trace) / f"{method}_{round(100 * keep)}.csv", rows)
    finally:
        env.close()
    return report(results, families, {"model": model_path, "episodes_per_family": episodes, "seed": seed,
                                      "split": split,
                                      "layer": layer if layer is not None else model.config.prune_layer,
                                      "replan_steps": base.control.replan_steps,
                                      "gripper_threshold": base.control.gripper_threshold,
                                      "params": dict(params or {}),
                                      "seconds": round(time.time() - start, 1)})


def _write_trace(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TRACE_COLUMNS)
        w.writerows([[round(float(v), 5) if isinstance(v, (float, np.floating)) else v for v in row] for row in rows])


def _write_strip(path: Path, frames: list, grid: int) -> None:
    import cv2

    from ..plots import strip

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(strip(frames, grid), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def report(results: list[MethodResult], families: tuple[str, ...], meta: dict) -> dict:
    ref = results[0]
    ref_lat = float(np.median(ref.latency_ms)) if ref.latency_ms else float("nan")
    rows = []
    for r in results:
        lat = float(np.median(r.latency_ms)) if r.latency_ms else float("nan")
        delta, delta_se = paired_difference(r, ref)
        rows.append({
            "method": r.method, "keep": r.keep,
            "success": {f: round(100 * r.rate(f), 1) for f in families},
            "success_avg": round(100 * r.rate(), 1), "stderr_avg": round(100 * r.stderr(), 1),
            "relative_success": round(100 * r.rate() / ref.rate(), 1) if ref.rate() > 0 else None,
            # same seeds for every method: the difference to unpruned and its paired standard error
            "delta_vs_none": round(100 * delta, 1), "delta_stderr": round(100 * delta_se, 1),
            "llm_flops_ratio": round(float(np.mean(r.flops)), 3) if r.flops else None,
            "tokens_kept": round(float(np.mean(r.tokens)), 1) if r.tokens else None,
            # the budget a row really spent: visual tokens kept / tokens, over every plan
            "effective_keep": round(float(np.sum(r.tokens) / np.sum(r.tokens_total)), 4) if r.tokens else None,
            "tick_ms": round(lat, 1), "speedup": round(ref_lat / lat, 2) if lat else None,
            "plan_errors": r.plan_errors,
            # per episode (1 = success), same order in every row: for paired comparisons between methods
            "outcomes": {f: [int(x) for x in r.successes[f]] for f in families},
        })
    rep = {"meta": meta, "families": list(families), "rows": rows}
    rep["pairwise"] = pairwise(rep)
    rep["unmatched_budgets"] = unmatched_budgets(rows)
    return rep


BUDGET_TOLERANCE = 0.02  # rows at one keep ratio compare only if their effective budgets agree this closely


SAME_RUN = ("model", "episodes_per_family", "seed", "split", "layer", "replan_steps", "gripper_threshold", "params")


def read_report(path: str | Path) -> dict:
    """An ``eval --json`` report, or a named error."""
    try:
        rep = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SettingsError(f"evaluation report {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SettingsError(f"evaluation report {path} is not JSON: {err}") from None
    if not isinstance(rep, dict) or not {"meta", "families", "rows"} <= set(rep) or not rep["rows"] or \
            rep["rows"][0].get("method") != "none":
        raise SettingsError(f"{path} is not a report written by `vla-pruner eval --json`")
    return rep


def merge(reports: list[dict]) -> dict:
    """One report from evaluations of other methods on the same episodes (an evaluation split across
    processes or machines): each one's unpruned row must have the same outcomes, episode by episode.
    Speedups stay relative to each run's own unpruned row."""
    first = reports[0]
    rows = list(first["rows"])
    for rep in reports[1:]:
        for key in SAME_RUN:
            if rep["meta"].get(key) != first["meta"].get(key):
                raise SettingsError(f"the evaluations differ in {key} ({first['meta'].get(key)!r} and "
                                    f"{rep['meta'].get(key)!r}); only runs on the same episodes merge")
        if rep["families"] != first["families"] or rep["rows"][0]["outcomes"] != first["rows"][0]["outcomes"]:
            raise SettingsError("the evaluations' unpruned rows differ episode by episode; only runs of the same "
                                "model on the same episodes merge")
        seen = {(r["method"], r["keep"]) for r in rows}
        twice = [f"{r['method']} {r['keep']}" for r in rep["rows"][1:] if (r["method"], r["keep"]) in seen]
        if twice:
            raise SettingsError(f"rows in more than one evaluation: {', '.join(twice)}")
        rows += rep["rows"][1:]
    meta = {**first["meta"], "seconds": round(sum(r["meta"].get("seconds", 0.0) for r in reports), 1),
            "merged_from": len(reports)}
    rep = {"meta": meta, "families": first["families"], "rows": rows}
    rep["pairwise"] = pairwise(rep)
    rep["unmatched_budgets"] = unmatched_budgets(rows)
    return rep


def unmatched_budgets(rows: list[dict]) -> dict:
    """``{keep: {method: effective keep}}`` for each keep ratio whose rows spent budgets more than
    ``BUDGET_TOLERANCE`` apart (relative): their success rates are not a comparison of methods."""
    out = {}
    for keep in sorted({r["keep"] for r in rows if r["keep"] < 1}, reverse=True):
        spent = {r["method"]: r["effective_keep"] for r in rows if r["keep"] == keep and r["effective_keep"]}
        if spent and max(spent.values()) > (1 + BUDGET_TOLERANCE) * min(spent.values()):
            out[str(keep)] = spent
    return out


def pairwise(rep: dict) -> dict:
    """At each keep ratio below 1, every method against every other on the same episodes:
    ``{keep: {a: {b: [points a - b, paired s.e.]}}}`` from the rows' per-episode outcomes."""
    out: dict = {}
    pruned = [r for r in rep["rows"] if r["keep"] < 1]
    for keep in sorted({r["keep"] for r in pruned}, reverse=True):
        rows = {r["method"]: np.array([v for f in rep["families"] for v in r["outcomes"][f]], float)
                for r in pruned if r["keep"] == keep}
        table = out.setdefault(str(keep), {})
        for a, xa in rows.items():
            for b, xb in rows.items():
                if a != b:
                    delta, se = _paired(xa - xb)
                    table.setdefault(a, {})[b] = [round(100 * delta, 1), round(100 * se, 1)]
    return out


def markdown(rep: dict) -> str:
    fams = rep["families"]
    head = ("| method | keep | effective keep | " + " | ".join(fams) + " | avg (± s.e.) | rel. "
            "| vs none (± paired s.e.) | LLM FLOPs | tokens | tick ms | speedup |")
    lines = [head, "|" + "---|" * (len(fams) + 10)]
    unmatched = rep.get("unmatched_budgets", {})
    for r in rep["rows"]:
        flag = " **UNMATCHED**" if str(r["keep"]) in unmatched else ""
        eff = f"{100 * r['effective_keep']:.1f}%" if r.get("effective_keep") is not None else "-"
        lines.append(f"| {r['method']} | {100 * r['keep']:.1f}% | {eff}{flag} | "
                     + " | ".join(f"{r['success'][f]:.1f}" for f in fams)
                     + f" | {r['success_avg']:.1f} ± {r['stderr_avg']:.1f} | {r['relative_success']} | "
                       f"{r['delta_vs_none']:+.1f} ± {r['delta_stderr']:.1f} | {r['llm_flops_ratio']} | "
                       f"{r['tokens_kept']} | {r['tick_ms']} | {r['speedup']}x |")
    for keep, spent in unmatched.items():
        lines += ["", f"**Budgets differ at keep {100 * float(keep):.1f}%** (effective keep "
                  + ", ".join(f"{m} {100 * v:.1f}%" for m, v in spent.items())
                  + f", more than {100 * BUDGET_TOLERANCE:.0f}% apart): these rows do not compare methods."]
    for keep, table in rep.get("pairwise", {}).items():
        methods = list(table)
        lines += ["", f"Keep {100 * float(keep):.1f}%: row minus column, points of success (± paired s.e.)", "",
                  "| | " + " | ".join(methods) + " |", "|" + "---|" * (len(methods) + 1)]
        for a in methods:
            cells = ["" if a == b else f"{table[a][b][0]:+.1f} ± {table[a][b][1]:.1f}" for b in methods]
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write(rep: dict, json_path: str | None, md_path: str | None, plot_path: str | None = None) -> None:
    if json_path:
        Path(json_path).write_text(json.dumps(rep, indent=2))
    if md_path:
        Path(md_path).write_text(markdown(rep) + "\n")
    if plot_path:
        plot_success_vs_flops(rep, plot_path)


def plot_success_vs_flops(rep: dict, path: str | Path) -> Path:
    """Success (± s.e.) against the LLM FLOPs ratio, one line per method through its keep ratios, the
    unpruned model as a star; each point labelled with its effective keep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(r["method"] for r in rep["rows"]):
        rows = sorted((r for r in rep["rows"] if r["method"] == method), key=lambda r: r["llm_flops_ratio"] or 1.0)
        x = [r["llm_flops_ratio"] or 1.0 for r in rows]
        y = [r["success_avg"] for r in rows]
        err = [r["stderr_avg"] for r in rows]
        if method == "none":
            ax.errorbar(x, y, yerr=err, fmt="k*", ms=12, label="none (unpruned)", zorder=3)
            continue
        line = ax.errorbar(x, y, yerr=err, marker="o", ms=4, lw=1, capsize=2, label=method)
        for xi, yi, r in zip(x, y, rows, strict=True):
            ax.annotate(f"{100 * r['effective_keep']:.0f}%" if r.get("effective_keep") else "", (xi, yi),
                        textcoords="offset points", xytext=(3, 3), fontsize=6, color=line[0].get_color())
    ax.set_xlabel("LLM FLOPs (ratio to unpruned)")
    ax.set_ylabel("success (%), ± s.e.")
    ax.set_title(f"{rep['meta'].get('model')}: {rep['meta'].get('episodes_per_family')} episodes per family; "
                 "labels: effective keep", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
