"""``vla-pruner bench-papers``: the two papers' model sizes on a GPU, every method, one command.

OpenVLA-7B with its autoregressive action tokens (one camera; VLA-Pruner's anchor: 1.83x at 12.5%
keep, 236 -> 129 ms on an RTX 4090) and OpenVLA-OFT-7B (OFT's published head and sequence: LIBERO's
8-step chunk, two cameras, a proprio token, bidirectional attention; VLA-Pruner's anchor: 1.99x,
135.8 -> 69.0 ms), both at their real sizes in bf16 with seeded random weights (latency does not
depend on the weights), every pruning method at keep 1/0.5/0.25/0.125. Writes one JSON per model and
a Markdown file for BENCHMARKS.md.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import SettingsError
from ..progress import Progress
from .speed import format_markdown, format_table, run_bench, write_json

METHODS = ("none", "random", "fastv", "divprune", "vla_pruner", "vla_iap", "hybrid")
KEEPS = (1.0, 0.5, 0.25, 0.125)
SUITES = (  # (file stem, what, head, cameras, proprio values)
    ("openvla_tokens", "OpenVLA-7B, autoregressive action tokens, one camera (paper: 1.83x at 12.5%, 236 -> 129 ms "
                       "on an RTX 4090)", "tokens", 1, 0),
    ("oft", "OpenVLA-OFT-7B, OFT's head, two cameras + proprio (paper: 1.99x at 12.5%, 135.8 -> 69.0 ms)",
     "oft", 2, 8),
)


def run_papers(out_dir: str | Path, model: str = "openvla-7b", device: str = "cuda", dtype: str = "bfloat16",
               ticks: int = 10, warmup: int = 3, quiet: bool = False, log=print) -> Path:
    """Both suites; returns the Markdown file written in ``out_dir``."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SettingsError(f"--device {device}: CUDA is not available here (torch {torch.__version__}, "
                            f"torch.cuda.is_available() is False); this benchmark needs an NVIDIA GPU")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    sections = [f"`vla-pruner bench-papers --out {out_dir}` (model {model}, {device}, {dtype}, {ticks} timed ticks "
                f"after {warmup})", ""]
    for stem, what, head, cameras, proprio in SUITES:
        if model != "openvla-7b":
            what = f"{what} [dry run on the {model} preset]"
        log(f"bench-papers: {what}")
        records, meta = run_bench(model, head, METHODS, KEEPS, ticks, warmup, None, device, dtype, cameras,
                                  progress=None if quiet else Progress(stem, unit="rounds"), proprio_dim=proprio)
        write_json(out / f"{stem}.json", records, meta)
        log(format_table(records, meta))
        sections += [f"### {what}", "", format_markdown(records, meta), ""]
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    sections.append(f"Total wall time {time.time() - start:.0f} s.")
    md = out / "bench_papers.md"
    md.write_text("\n".join(sections) + "\n")
    log(f"wrote {md} and {', '.join(f'{s[0]}.json' for s in SUITES)} in {time.time() - start:.0f} s")
    return md
