"""``vla-pruner bench-papers``: the two papers' model sizes on a GPU, every method, one command.

OpenVLA-7B with its autoregressive action tokens (one camera; VLA-Pruner's anchor: 1.83x at 12.5%
keep, 236 -> 129 ms on an RTX 4090), OpenVLA-OFT-7B (OFT's published head and sequence: LIBERO's
8-step chunk, two cameras, a proprio token, bidirectional attention; VLA-Pruner's anchor: 1.99x,
135.8 -> 69.0 ms) and pi0 (transformers' PI0 at LeRobot's pi0_base sizes: three cameras as LeRobot's
pi0 configurations use, an 8-value state, 10 denoising steps; VLA-Pruner's anchor: 1.73x at 25% keep),
all at their real sizes in bf16 with seeded random weights (latency does not depend on the weights),
every pruning method at keep 1/0.5/0.25/0.125. Writes one JSON per model and a Markdown file for
BENCHMARKS.md. ``--model tiny`` is a dry run of the same suites on the small presets.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import SettingsError
from ..progress import Progress
from .speed import format_markdown, format_table, run_bench, write_json

METHODS = ("none", "random", "fastv", "divprune", "vla_pruner", "vla_iap", "hybrid")
KEEPS = (1.0, 0.5, 0.25, 0.125)
SUITES = (  # (file stem, what, family, head, cameras, proprio values)
    ("openvla_tokens", "OpenVLA-7B, autoregressive action tokens, one camera (paper: 1.83x at 12.5%, 236 -> 129 ms "
                       "on an RTX 4090)", "openvla", "tokens", 1, 0),
    ("oft", "OpenVLA-OFT-7B, OFT's head, two cameras + proprio (paper: 1.99x at 12.5%, 135.8 -> 69.0 ms)",
     "openvla", "oft", 2, 8),
    ("pi0", "pi0 (transformers' PI0, pi0_base sizes), three cameras + state, 10 denoising steps (paper: VLA-Pruner "
            "1.73x at 25%)", "pi0", "chunk", 3, 8),
)
FULL_SIZE = {"openvla": "openvla-7b", "pi0": "pi0"}
DRY_RUN = {"openvla": None, "pi0": "pi0-tiny"}  # None: the --model preset itself


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
    for stem, what, family, head, cameras, proprio in SUITES:
        name = FULL_SIZE[family]
        if model != "openvla-7b":
            name = DRY_RUN[family] or model
            what = f"{what} [dry run on the {name} preset]"
        log(f"bench-papers: {what}")
        records, meta = run_bench(name, head, METHODS, KEEPS, ticks, warmup, None, device, dtype, cameras,
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
