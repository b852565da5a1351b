"""``vla-pruner bench``: tick latency of each pruning method and keep ratio, measured side by side.

Every configuration runs the same generated frames; rounds interleave the configurations so drift
(thermal, other load) hits all of them alike. Reported per configuration: median tick latency,
speedup versus ``none`` from the same run, LLM FLOPs ratio, median time spent scoring and selecting
tokens (and its share of the tick), peak memory, and the floor pruning cannot beat at that layer
(vision towers + K full layers + the rest with zero visual tokens), itself measured.
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..model import load_model
from ..policy import Observation, VLAPolicy
from ..progress import Progress
from ..pruning import Pruner, build_pruner, prunes_inside_llm
from ..pruning.base import CameraInput, PrunerConfig, TickContext
from ..synthetic import moving_square_frames


@dataclass
class BenchRecord:
    method: str
    keep: float
    layer: int  # pruning layer K of the method
    head: str
    model: str
    median_ms: float
    p95_ms: float
    speedup: float  # median of none / median of this, same run
    flops_ratio: float
    select_ms: float
    select_share: float  # select_ms / median_ms
    peak_mem_mb: float
    floor_ms: float  # vision + K full layers + the rest at zero visual tokens
    floor_speedup: float
    tokens_kept: int
    vs_random: float | None = None  # median of random at the same keep / median of this, same run


class _FloorPruner(Pruner):
    """Keeps no visual token after layer K: the latency bound of any pruning at that layer."""

    name = "floor"

    def tick_keep_ratio(self, ctx: TickContext) -> float:
        return 0.0

    def camera_budgets(self, ctx: TickContext, sizes: list[int]) -> list[int]:
        return [0] * len(sizes)

    def select(self, inp: CameraInput, keep: int, ctx: TickContext) -> torch.Tensor:
        return torch.zeros(inp.hidden.shape[0], 0, dtype=torch.long, device=inp.hidden.device)


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # process peak RSS (Linux: KiB)


def run_bench(model: str = "small", head: str = "chunk", methods: tuple[str, ...] = ("none", "random", "fastv"),
              keeps: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125), ticks: int = 15, warmup: int = 3,
              layer: int | None = None, device: str = "cpu", dtype: str = "float32", num_cameras: int = 1,
              threads: int | None = None, seed: int = 0, progress=None,
              proprio_dim: int = 0) -> tuple[list[BenchRecord], dict]:
    """``proprio_dim``: a proprio token of that many values (presets only; a checkpoint has its own)."""
    if threads:
        torch.set_num_threads(threads)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    dev = torch.device(device)
    vla, tokenizer = _load(model, head, dev, torch_dtype, num_cameras, proprio_dim)
    cfg = vla.config
    configs: list[tuple[str, float, Pruner]] = [("none", 1.0, build_pruner("none"))]
    for method in methods:
        if method == "none":
            continue
        for keep in keeps:
            params = {"keep_ratio": keep}
            k = layer if layer is not None else cfg.prune_layer  # as the node: the model's K when it names one
            if k is not None and prunes_inside_llm(method):
                params["layer"] = k
            configs.append((method, keep, build_pruner(method, **params)))
    layers = sorted({p.config.layer for _, _, p in configs[1:]} or {3})
    configs += [("floor", float(k), _FloorPruner(PrunerConfig(layer=k))) for k in layers]
    # Time temporal methods with a full window (their steady state), not an episode's first ticks.
    warmup = max(warmup, *(int(getattr(p.config, "window", 0)) for _, _, p in configs))
    frames = moving_square_frames(warmup + ticks, cfg.image_size, seed)
    policies = [VLAPolicy(vla, tokenizer, pruner) for _, _, pruner in configs]
    lat: list[list[float]] = [[] for _ in configs]
    sel: list[list[float]] = [[] for _ in configs]
    flops: list[float] = [1.0] * len(configs)
    kept: list[int] = [0] * len(configs)
    peak: list[float] = [0.0] * len(configs)
    instruction = "pick up the red cube and put it on the plate"
    t_start = time.time()
    for r in range(warmup + ticks):
        for c, policy in enumerate(policies):
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            chunk = policy.step(Observation([frames[r]] * cfg.num_cameras, instruction, _proprio(cfg), float(r)))
            if r >= warmup:
                lat[c].append(chunk.stats.latency_ms["total"])
                sel[c].append(chunk.stats.latency_ms.get("select", 0.0))
            flops[c] = chunk.stats.llm_flops_ratio
            kept[c] = sum(chunk.stats.tokens_kept)
            peak[c] = max(peak[c], _peak_mem_mb(dev))
        if progress:
            progress(r + 1, warmup + ticks, time.time() - t_start)
    med = [float(np.median(x)) for x in lat]
    random_ms = {keep: med[c] for c, (method, keep, _) in enumerate(configs) if method == "random"}
    floors = {int(keep): med[c] for c, (method, keep, _) in enumerate(configs) if method == "floor"}
    records = []
    for c, (method, keep, pruner) in enumerate(configs):
        if method == "floor":
            continue
        floor_ms = floors.get(pruner.config.layer, floors[min(floors)])
        records.append(BenchRecord(
            method=method, keep=keep, layer=pruner.config.layer, head=cfg.head, model=model,
            median_ms=round(med[c], 2),
            p95_ms=round(float(np.percentile(lat[c], 95)), 2), speedup=round(med[0] / med[c], 3),
            flops_ratio=round(flops[c], 4), select_ms=round(float(np.median(sel[c])), 3),
            select_share=round(float(np.median(sel[c])) / med[c], 4), peak_mem_mb=round(peak[c], 1),
            floor_ms=round(floor_ms, 2), floor_speedup=round(med[0] / floor_ms, 3), tokens_kept=kept[c],
            vs_random=round(random_ms[keep] / med[c], 3) if keep in random_ms and method != "none" else None))
    meta = {
        "model": model, "head": cfg.head, "device": str(dev), "device_name": _device_name(dev), "dtype": dtype,
        "threads": torch.get_num_threads(), "attn_implementation": vla.language_model.config._attn_implementation,
        "ticks": ticks, "warmup": warmup, "num_cameras": cfg.num_cameras, "proprio_dim": cfg.proprio_dim,
        "visual_tokens_per_camera": cfg.tokens_per_camera, "llm_layers": cfg.num_layers,
        "commit": _git_commit(), "torch": torch.__version__, "python": platform.python_version(),
    }
    return records, meta


def _proprio(cfg) -> np.ndarray | None:
    return np.zeros(cfg.proprio_dim) if cfg.proprio_dim else None


def _load(model: str, head: str, device: torch.device, dtype: torch.dtype, num_cameras: int, proprio_dim: int = 0):
    from ..model import PRESET_NAMES, build_preset, takes_any_camera_count

    if takes_any_camera_count(model):  # pi0: no head to choose, as many cameras as asked
        return load_model(model, device=device, dtype=dtype, num_cameras=num_cameras)
    if model in PRESET_NAMES:
        return build_preset(model, head=head, num_cameras=num_cameras, proprio_dim=proprio_dim, device=device,
                            dtype=dtype)
    return load_model(model, head=head, device=device, dtype=dtype)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return platform.processor() or "cpu"


def format_table(records: list[BenchRecord], meta: dict) -> str:
    head = (f"model={meta['model']} head={meta['head']} device={meta['device_name']} dtype={meta['dtype']} "
            f"cameras={meta['num_cameras']} ticks={meta['ticks']} (median) commit={meta['commit']}")
    cols = f"{'method':<10} {'keep':>6} {'K':>2} {'tokens':>6} {'median ms':>10} {'p95 ms':>8} {'speedup':>8} " \
           f"{'vs rand':>7} {'FLOPs':>6} {'select ms':>9} {'select %':>8} {'floor ms':>8} {'floor x':>7} {'peak MB':>8}"
    lines = [head, cols, "-" * len(cols)]
    for r in records:
        layer = "-" if r.method == "none" else str(r.layer)  # nothing is pruned, at no layer
        vs_random = "-" if r.vs_random is None else f"{r.vs_random:.2f}x"
        lines.append(f"{r.method:<10} {r.keep:>6.3f} {layer:>2} {r.tokens_kept:>6d} {r.median_ms:>10.1f} "
                     f"{r.p95_ms:>8.1f} {r.speedup:>7.2f}x {vs_random:>7} {r.flops_ratio:>6.3f} "
                     f"{r.select_ms:>9.2f} {100 * r.select_share:>7.1f}% "
                     f"{r.floor_ms:>8.1f} {r.floor_speedup:>6.2f}x {r.peak_mem_mb:>8.0f}")
    return "\n".join(lines)


def format_markdown(records: list[BenchRecord], meta: dict) -> str:
    """The table as Markdown, for BENCHMARKS.md."""
    title = (f"{meta['model']}, {meta['head']} head, {meta['num_cameras']} camera(s), proprio "
             f"{meta.get('proprio_dim', 0)}, {meta['device_name']}, {meta['dtype']}, median of {meta['ticks']} "
             f"ticks, commit {meta['commit']}")
    lines = [title, "",
             "| method | keep | K | visual tokens | median ms | p95 ms | speedup | vs random | LLM FLOPs | select ms "
             "| select % |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        layer = "-" if r.method == "none" else str(r.layer)
        vs_random = "-" if r.vs_random is None else f"{r.vs_random:.2f}x"
        lines.append(f"| {r.method} | {r.keep:g} | {layer} | {r.tokens_kept} | {r.median_ms:.1f} | {r.p95_ms:.1f} | "
                     f"{r.speedup:.2f}x | {vs_random} | {r.flops_ratio:.3f} | {r.select_ms:.2f} | "
                     f"{100 * r.select_share:.1f}% |")
    return "\n".join(lines)


def write_json(path: str | Path, records: list[BenchRecord], meta: dict) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"meta": meta, "records": [asdict(r) for r in records]}, indent=2))
    tmp.replace(path)


def progress_printer(prefix: str):
    return Progress(prefix, unit="rounds")
