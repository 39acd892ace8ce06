#!/usr/bin/env python3
"""How close the batch pipeline (decode, preprocess, model, write) comes to the model's own rate, and
whether its memory stays flat with the number of inputs. Not a test: a report.

    bench/pipeline_bench.py [--images 2000] [--big 20000] [--model weights/synthetic-scenes]
                            [--binary build/apps/groupvit] [--threads 2] [--batch-size 32]

Generates --big (a superset of the --images) photo-like JPEGs once (320x240, smooth random colour
fields with a few shapes, fixed seed) into --cache (default /tmp/groupvit-pipeline-bench) and packs them
with examples/large-runs/make_shards.py into WebDataset shards of --per-shard. Then, each run its own
process with the same --threads and --batch-size:

  segment --mode hf --labels ... --no-overlay   from the directory and from the shards (--images inputs)
  embed --output DIR                            from the directory and from the shards (--images inputs)
  embed --output DIR                            from the shards of --big inputs (memory flat?)

and reports per run: images/s (processed / the process's wall time, start-up and model loading
included), the pipeline's own rate (processed / wall_seconds of the --json summary: its loop), the
model-only rate (processed / model_seconds: time inside the model step), the ratio pipeline rate /
model-only rate (= model_seconds / wall_seconds; the target: >= 0.90), and the peak RSS of the process
(os.wait4's ru_maxrss for that child alone). Files are read once before the runs, so that all of them
find them in the page cache. Writes docs/pipeline-benchmark.md (--report) and prints it.
"""
import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
MAKE_SHARDS = ROOT / "examples" / "large-runs" / "make_shards.py"
GEN_VERSION = 1  # bump when the generated images change


def photo(i, seed, size=(320, 240)):
    """A deterministic photo-like image: a smooth random colour field (bicubic upsampling of a coarse
    random grid, blurred), a few filled shapes in other colours, mild pixel noise."""
    rng = np.random.default_rng([seed, i])
    w, h = size
    gw, gh = int(rng.integers(3, 9)), int(rng.integers(3, 7))
    coarse = rng.integers(0, 256, size=(gh, gw, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize(size, Image.BICUBIC).filter(ImageFilter.GaussianBlur(6))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 5))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(10, 70))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        elif kind == 1:
            draw.rectangle([cx - r, cy - r // 2, cx + r, cy + r // 2], fill=colour)
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    arr = np.asarray(img, dtype=np.int16) + rng.integers(-6, 7, size=(h, w, 3), dtype=np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def ensure_images(cache, n, seed):
    """cache/images-N/NNNNNNN.jpg for 0..n-1, generated once (a stamp file says which are complete)."""
    d = cache / f"images-{n}"
    stamp = d / ".complete"
    want = f"v{GEN_VERSION} seed {seed} n {n}"
    if stamp.exists() and stamp.read_text() == want:
        return d
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    t = time.time()
    for i in range(n):
        p = d / f"{i:07d}.jpg"
        photo(i, seed).save(p, quality=88)
        if (i + 1) % 2000 == 0:
            print(f"[bench] generated {i + 1}/{n} images ({time.time() - t:.0f}s)", file=sys.stderr)
    stamp.write_text(want)
    print(f"[bench] {n} images in {d} ({time.time() - t:.0f}s)", file=sys.stderr)
    return d


def subset(cache, big_dir, n):
    """cache/subset-N: hard links to the first n images of big_dir (the same files, no second copy)."""
    d = cache / f"subset-{n}"
    stamp = d / ".complete"
    want = f"{big_dir.name} {n}"
    if stamp.exists() and stamp.read_text() == want:
        return d
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for i in range(n):
        src = big_dir / f"{i:07d}.jpg"
        try:
            os.link(src, d / src.name)
        except OSError:
            shutil.copy(src, d / src.name)
    stamp.write_text(want)
    return d


def ensure_shards(cache, images, per_shard):
    d = cache / f"shards-{images.name}-{per_shard}"
    stamp = d / ".pattern"
    if stamp.exists():
        return stamp.read_text()
    shutil.rmtree(d, ignore_errors=True)
    t = time.time()
    p = subprocess.run([sys.executable, str(MAKE_SHARDS), str(images), str(d / "shard-%06d.tar"),
                        "--per-shard", str(per_shard), "--quiet"], capture_output=True, text=True, check=True)
    pattern = p.stdout.strip().splitlines()[-1]
    stamp.write_text(pattern)
    print(f"[bench] packed {images} into {pattern} ({time.time() - t:.0f}s)", file=sys.stderr)
    return pattern


def warm(paths):
    """Reads the files once, so that every run finds them in the page cache."""
    total = 0
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    total += len(chunk)
    return total


def shard_files(pattern):
    d = Path(pattern).parent
    return sorted(d.glob("*.tar"))


class Popen4(subprocess.Popen):
    """Popen whose wait() reaps the child with os.wait4, keeping its rusage (ru_maxrss of that child only)."""
    rusage = None

    def _try_wait(self, wait_flags):
        try:
            pid, sts, usage = os.wait4(self.pid, wait_flags)
        except ChildProcessError:
            return self.pid, 0
        if pid == self.pid:
            self.rusage = usage
        return pid, sts


def run_measured(name, argv, out):
    shutil.rmtree(out, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not (k.startswith("SLURM_") or k == "JOB_COMPLETION_INDEX")}
    t = time.monotonic()
    proc = Popen4([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    stdout, stderr = proc.communicate()
    wall = time.monotonic() - t
    if proc.returncode != 0:
        raise SystemExit(f"[bench] {name}: exit {proc.returncode}\n{' '.join(map(str, argv))}\n"
                         f"{stderr.decode()[-3000:]}")
    summary = json.loads(stdout.decode().strip().splitlines()[-1])
    rss = proc.rusage.ru_maxrss * 1024 if proc.rusage is not None else math.nan
    print(f"[bench] {name}: {summary['processed']} in {wall:.1f}s (loop {summary['wall_seconds']:.1f}s, "
          f"model {summary['model_seconds']:.1f}s), peak RSS {rss / 2**20:.0f} MiB", file=sys.stderr)
    return {"name": name, "argv": [str(a) for a in argv], "summary": summary, "wall": wall, "rss": rss}


def cpu_description():
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip() or "unknown"
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    have = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16") if f in flags]
    return model, have


def versions(binary):
    out = {}
    try:
        out["groupvit"] = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                         timeout=60).stdout.strip() or "?"
    except OSError:
        out["groupvit"] = "?"
    try:
        ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=60).stdout
        lib = next((line.split("=>")[1].split()[0] for line in ldd.splitlines() if "libtorch_cpu" in line), None)
        if lib:
            vfile = Path(lib).parent.parent / "version.py"
            text = vfile.read_text() if vfile.exists() else ""
            ver = next((line.split("=", 1)[1].strip().strip("'\"") for line in text.splitlines()
                        if line.startswith("__version__")), None)
            out["LibTorch"] = f"{ver or '?'} ({Path(lib).parent})"
    except (OSError, IndexError):
        pass
    try:
        git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
        out["source"] = f"{git}{' + uncommitted changes' if dirty else ''}"
    except OSError:
        pass
    out["Python (generator)"] = f"{platform.python_version()}, numpy {np.__version__}, Pillow {Image.__version__}"
    out["kernel"] = platform.release()
    return out


def fmt_rate(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def main():
    ap = argparse.ArgumentParser(description="Pipeline throughput vs the model-only rate, and peak memory vs "
                                             "input count, of groupvit segment/embed over a directory and "
                                             "over WebDataset shards.")
    ap.add_argument("--images", type=int, default=2000, help="inputs of the throughput runs (default 2000)")
    ap.add_argument("--big", type=int, default=20000,
                    help="inputs of the second embed-from-shards run, for peak memory (default 20000; 0: skip)")
    ap.add_argument("--model", default=str(ROOT / "weights" / "synthetic-scenes"))
    ap.add_argument("--binary", default=str(ROOT / "build" / "apps" / "groupvit"))
    ap.add_argument("--threads", type=int, default=2, help="--threads of every run (default 2)")
    ap.add_argument("--batch-size", type=int, default=32, help="--batch-size of every run (default 32)")
    ap.add_argument("--workers", type=int, default=None, help="--workers (default: the CLI's own)")
    ap.add_argument("--labels", default="circle,square,triangle,cross,red,green,blue")
    ap.add_argument("--per-shard", type=int, default=1000, help="images per shard (default 1000)")
    ap.add_argument("--cache", default="/tmp/groupvit-pipeline-bench",
                    help="generated images and shards, kept between runs (default %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report", default=str(ROOT / "docs" / "pipeline-benchmark.md"))
    args = ap.parse_args()

    binary, model = str(Path(args.binary).resolve()), str(Path(args.model).resolve())
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    total = max(args.images, args.big)
    t0 = time.time()
    all_images = ensure_images(cache, total, args.seed)
    small = all_images if args.images == total else subset(cache, all_images, args.images)
    small_pattern = ensure_shards(cache, small, args.per_shard)
    big_pattern = ensure_shards(cache, all_images, args.per_shard) if args.big else None
    warmed = warm([small, *shard_files(small_pattern), *(shard_files(big_pattern) if big_pattern else [])])
    print(f"[bench] inputs ready after {time.time() - t0:.0f}s ({warmed / 2**20:.0f} MiB read into the page cache)",
          file=sys.stderr)

    common = ["--model", model, "--threads", str(args.threads), "--batch-size", str(args.batch_size),
              "--json", "--quiet"]
    if args.workers is not None:
        common += ["--workers", str(args.workers)]
    seg = ["segment", "--mode", "hf", "--labels", args.labels, "--no-overlay"]
    outs = cache / "out"
    runs = []
    for what, source in (("directory", str(small)), ("shards", small_pattern)):
        runs.append(("segment", what, args.images,
                     run_measured(f"segment from {what}", [binary, *seg, "--input", source,
                                                           "--output", outs / f"segment-{what}", *common],
                                  outs / f"segment-{what}")))
    for what, source in (("directory", str(small)), ("shards", small_pattern)):
        runs.append(("embed", what, args.images,
                     run_measured(f"embed from {what}", [binary, "embed", "--input", source,
                                                         "--output", outs / f"embed-{what}", *common],
                                  outs / f"embed-{what}")))
    if big_pattern:
        runs.append(("embed", "shards", args.big,
                     run_measured(f"embed from shards, {args.big}", [binary, "embed", "--input", big_pattern,
                                                                   "--output", outs / "embed-big", *common],
                                  outs / "embed-big")))
    shutil.rmtree(outs, ignore_errors=True)

    cpu, flags = cpu_description()
    cores = os.cpu_count()
    with open(Path(model) / "config.json") as f:
        vision = json.load(f)["vision_config"]
    vers = versions(binary)
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = math.nan

    lines = [
        "# Batch pipeline benchmark",
        "",
        f"Written by `bench/pipeline_bench.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC in "
        f"{time.time() - t0:.0f} s. Not a test: numbers from one run on a machine that may be shared.",
        "",
        f"* CPU: {cpu}, {cores} logical cores visible, flags: {', '.join(flags) or 'none of avx2/avx512f/amx'}; "
        f"load average {load:.1f} at the end",
        *[f"* {k}: {v}" for k, v in vers.items()],
        f"* model: `{Path(model).relative_to(ROOT) if Path(model).is_relative_to(ROOT) else model}` "
        f"(vision input {vision['image_size']} px, patch {vision['patch_size']}, width {vision['hidden_size']})",
        f"* inputs: {args.images:,} generated 320x240 JPEGs (smooth colour fields + shapes, seed {args.seed}), "
        f"as a directory and as WebDataset shards of {args.per_shard} (`examples/large-runs/make_shards.py`); "
        f"all in the page cache",
        f"* every run a fresh process: `--threads {args.threads} --batch-size {args.batch_size}`"
        f"{f' --workers {args.workers}' if args.workers is not None else ' (default --workers)'}; "
        f"segment: `--mode hf --labels {args.labels} --no-overlay`; embed: `--output DIR`",
        "",
        "Columns: **images/s** = processed / the process's wall time (start-up, model loading and the "
        "counting pass included); **pipeline** = processed / `wall_seconds` of the `--json` summary (the "
        "pipeline loop); **model only** = processed / `model_seconds` (the time inside the model step); "
        "**ratio** = pipeline / model only (target >= 0.90); **peak RSS** = `ru_maxrss` of that process.",
        "",
        "| command | input | images | images/s | pipeline images/s | model-only images/s | ratio | peak RSS |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for cmd, what, n, r in runs:
        s = r["summary"]
        processed = s["processed"]
        assert processed == n and s["failed"] == 0, (r["name"], s)
        rate = processed / r["wall"]
        loop = processed / s["wall_seconds"] if s["wall_seconds"] else math.nan
        model_rate = processed / s["model_seconds"] if s["model_seconds"] else math.nan
        ratio = s["model_seconds"] / s["wall_seconds"] if s["wall_seconds"] else math.nan
        r["ratio"] = ratio
        lines.append(f"| {cmd} | {what} | {processed:,} | {fmt_rate(rate)} | {fmt_rate(loop)} | "
                     f"{fmt_rate(model_rate)} | {ratio:.2f}{'' if ratio >= 0.9 else ' (below 0.90)'} | "
                     f"{r['rss'] / 2**20:,.0f} MiB |")
    lines.append("")
    embeds = [(n, r) for cmd, what, n, r in runs if cmd == "embed" and what == "shards"]
    if len(embeds) == 2:
        (n1, r1), (n2, r2) = embeds
        growth = r2["rss"] / r1["rss"] - 1
        lines.append(f"Peak memory of embed from shards: {r1['rss'] / 2**20:,.0f} MiB at {n1:,} inputs, "
                     f"{r2['rss'] / 2**20:,.0f} MiB at {n2:,} ({growth:+.1%}; "
                     f"{(r2['rss'] - r1['rss']) / (n2 - n1):,.0f} bytes an extra input): "
                     f"{'flat' if abs(growth) < 0.10 else 'NOT flat'}.")
        lines.append("")
    below = [r["name"] for _, _, _, r in runs if r["ratio"] < 0.9]
    if below:
        lines.append(f"Below the 0.90 target: {', '.join(below)}. The ratio is the share of the pipeline loop "
                     "spent in the model step; the rest is the model's thread waiting for decoded inputs or "
                     "writing outputs itself (--writers defaults to 0 on the CPU).")
    else:
        lines.append("Every run meets the 0.90 target.")
    lines.append("")
    lines.append(f"The model step's own rate moves with the machine's load (load average {load:.1f} at the end on "
                 f"{cores} cores): compare the rows of one report with care, and rerun on an idle machine "
                 "for absolute numbers.")
    lines.append("")
    text = "\n".join(lines)
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
