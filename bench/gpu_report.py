#!/usr/bin/env python3
"""Turns the gpu_* rows of bench_groupvit (--device cuda) and bench_reference.py --gpu-rows, run on
the same GPU machine, into docs/benchmarks-gpu.md: images/s at one batch, ours eager and through
CUDA graphs against transformers eager (and torch.compile "reduce-overhead" where it ran).

    bench/gpu_report.py OURS_JSON REFERENCE_JSON OUT_MD
"""
import json
import sys
from pathlib import Path

from report import machine_of

ROWS = [("gpu_image", "image features"), ("gpu_seg_hf", "HF segmentation labels (6 classes)")]


def rate(row):
    return f"{row['images_per_s']:.0f}" if row and "images_per_s" in row else "–"


def main():
    ours = json.loads(Path(sys.argv[1]).read_text())
    ref = json.loads(Path(sys.argv[2]).read_text())
    out_md = Path(sys.argv[3])
    machine = machine_of(ours)
    batch = next((r["batch"] for k, r in ours["rows"].items() if k.startswith("gpu_") and "batch" in r), "?")
    lines = ["# GPU benchmarks", "",
             "Written by `scripts/gpu_check.sh` (bench/gpu_report.py): images per second (median of timed "
             f"repetitions) at batch {batch}, ours eager and through CUDA graphs (`groupvit::CudaGraphCache`, the "
             "`segment --cuda-graphs` path) against `transformers` eager on the same GPU, the same seeded "
             "full-size checkpoint and inputs. The issue's target: at least 2x the reference eager in fp16.", "",
             f"GPU: {ref.get('gpu', '?')}; host {machine['cpu']}, torch {machine['torch']}, commit {machine['commit']}.",
             "", "| row | dtype | ours eager | ours CUDA graphs | reference eager | reference torch.compile "
             "(reduce-overhead) | best ours / reference eager |", "|---|---|---|---|---|---|---|"]
    for prefix, label in ROWS:
        for tag in ("fp16", "bf16", "fp32"):
            eager = ours["rows"].get(f"{prefix}_{tag}")
            graph = ours["rows"].get(f"{prefix}_{tag}_graph")
            r_eager = ref["rows"].get(f"{prefix}_{tag}")
            r_comp = ref["rows"].get(f"compiled_{prefix}_{tag}")
            if not (eager or graph):
                continue
            best = max((r["images_per_s"] for r in (eager, graph) if r and "images_per_s" in r), default=None)
            speedup = f"{best / r_eager['images_per_s']:.2f}×" if best and r_eager and "images_per_s" in r_eager \
                else "–"
            lines.append(f"| {label} | {tag} | {rate(eager)} | {rate(graph)} | {rate(r_eager)} | {rate(r_comp)} | "
                         f"{speedup} |")
    notes = [f"- {k}: CUDA graph capture failed, ran eagerly: {r['fallback_reason']}"
             for k, r in ours["rows"].items() if r.get("fallback_reason")]
    notes += [f"- reference {k}: {r['error']}" for k, r in ref["rows"].items() if "error" in r]
    if notes:
        lines += [""] + notes
    out_md.write_text("\n".join(lines) + "\n")
    print(out_md.read_text())


if __name__ == "__main__":
    main()
