#!/usr/bin/env python3
"""The peer benchmark: ours (bench_groupvit) against transformers eager, ONNX Runtime and OpenVINO
(bench_peers.py) on this machine, same seeded checkpoint, inputs and threads. Each engine runs in a
process of its own; the engines take turns in an order rotated every round, and every ratio is taken
within one round (the engine's time over ours in that round), then the median over the rounds: the
hosts here change speed during long runs, so times from different moments do not compare.
Two more parts, in the same rounds: the --busy-rows again while a busy loop spins on one core (a
neighbour as on a shared node: how much each engine loses to it), and, with --cli, the whole embed
job of --photos photos (load, decode, preprocess, batch 32) as `groupvit embed` against the same job
with OpenVINO (bench/embed_job_openvino.py), quiet and beside the busy loop, with each process's peak
memory and CPU time; the two jobs' features are compared (cosine).
Writes a Markdown report and its JSON.

    bench/peers.py --cpp BENCH_GROUPVIT --converted DIR --hf DIR --cache DIR --report docs/peers.md
                   [--threads N] [--rounds 3] [--reps 3] [--engines ours,transformers,onnxruntime,openvino,...]
                   [--rows image_fp32_b1,...] [--busy-rows image_fp32_b8,text_fp32_1]
                   [--cli build/apps/groupvit [--photos 96]]
"""
import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ENGINES = ["ours", "ours-int8", "transformers", "onnxruntime", "openvino", "openvino-static"]
NAMES = {"ours": "groupvit C++", "ours-int8": "groupvit C++ --dtype int8", "transformers": "transformers eager", "onnxruntime": "ONNX Runtime",
         "openvino": "OpenVINO (dynamic shapes)", "openvino-static": "OpenVINO (static shapes)"}
TITLES = {"image_fp32_b1": "image features fp32, batch 1", "image_fp32_b8": "image features fp32, batch 8",
          "image_fp32_b32": "image features fp32, batch 32", "image_bf16_b32": "image features bf16, batch 32",
          "image_default_b1": "image features, engine's default precision, batch 1",
          "image_default_b32": "image features, engine's default precision, batch 32",
          "text_fp32_1": "text features, 1 prompt", "text_fp32_80": "text features, 80 prompts"}


def cpu_info():
    model, flags = platform.processor() or "unknown", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    return model, flags


def has_bf16(flags):
    return "avx512_bf16" in flags or "amx_bf16" in flags


def our_row(row, bf16):
    """The row of ours an engine's row is compared with: its default precision against our best."""
    return row.replace("default", "bf16" if bf16 else "fp32")


def engine_row(engine, row, bf16):
    """The row an engine is asked for: ours-int8 runs every image and text row in int8."""
    if engine == "ours-int8":
        return row.replace("fp32", "int8").replace("bf16", "int8").replace("default", "int8")
    return our_row(row, bf16) if engine == "ours" else row


def run_process(cmd, env=None):
    """(what it printed, its peak RSS in MiB, wall seconds, CPU seconds); raises with its stderr on failure."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(p.pid, 0)  # the child's own peak RSS (getrusage's is the largest child's)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        text, errors = out.read(), err.read().decode(errors="replace")
    if p.returncode != 0:
        raise SystemExit(f"peers: {' '.join(map(str, cmd[:4]))} ... failed ({p.returncode}):\n{errors[-3000:]}")
    return text, usage.ru_maxrss / 1024.0, time.perf_counter() - t0, usage.ru_utime + usage.ru_stime


def run(cmd, env=None):
    """(JSON it printed, its peak RSS in MiB, wall seconds)."""
    text, rss, wall, _ = run_process(cmd, env)
    return json.loads(text), rss, wall


@contextlib.contextmanager
def busy_neighbour(busy):
    """While inside: a process spinning on the first CPU of ours (none when busy is False)."""
    if not busy:
        yield
        return
    cpu = min(os.sched_getaffinity(0))
    p = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                         preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    time.sleep(0.5)  # running before the engine starts
    try:
        yield
    finally:
        p.kill()
        p.wait()


def photos(cache, n):
    """n photo-like 640x480 JPEGs (bench/pipeline_bench.py's generator), made once into cache."""
    import pipeline_bench

    d = cache / f"photos-{n}"
    if not (d / ".complete").exists():
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pipeline_bench.photo(i, seed=7, size=(640, 480)).save(d / f"{i:04d}.jpg", quality=90)
        (d / ".complete").write_text(str(n))
    return d


def embed_job_cmd(engine, a, photo_dir, output):
    if engine == "ours":
        return [a.cli, "embed", "-m", a.converted, "-i", str(photo_dir), "-o", str(output), "--batch-size", "32",
                "-t", str(a.threads), "--quiet", "--dtype", "auto"]
    return [sys.executable, str(HERE / "embed_job_openvino.py"), "--ir", str(a.cache / "image.xml"),
            "--preprocessor", a.hf, "--input", str(photo_dir), "--output", str(output), "--batch-size", "32",
            "--threads", str(a.threads)]


def embed_jobs(order, a, env, photo_dir, work):
    """Each engine's whole embed job, quiet and beside a busy neighbour: wall, CPU, peak RSS; features."""
    got, features = {}, {}
    for busy in (False, True):
        for engine in order:
            out = work / f"{engine}-{int(busy)}.npy"
            out.unlink(missing_ok=True)
            with busy_neighbour(busy):
                _, rss, wall, cpu = run_process(embed_job_cmd(engine, a, photo_dir, out), env)
            got.setdefault(engine, {})["busy" if busy else "quiet"] = {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": rss}
            features[engine] = np.load(out)
    return got, features


def cosine_min(x, y):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    return float((x * y).sum(1).min())


def engine_cmd(engine, a, rows):
    common = ["--threads", str(a.threads), "--reps", str(a.reps), "--warmup", str(a.warmup), "--rows", ",".join(rows)]
    if engine.startswith("ours"):
        return [a.cpp, "--model", a.converted, *common]
    return [sys.executable, str(HERE / "bench_peers.py"), "--engine", engine, "--model", a.hf, "--cache", str(a.cache),
            *common]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpp", help="bench_groupvit (required unless --render)")
    ap.add_argument("--converted", help="the converted model directory (ours)")
    ap.add_argument("--hf", help="the same model as a Hugging Face checkpoint (the peers)")
    ap.add_argument("--cache", type=Path, help="where the ONNX and OpenVINO exports are kept")
    ap.add_argument("--report", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--rows", default="image_fp32_b1,image_fp32_b8,image_fp32_b32,text_fp32_1,text_fp32_80",
                    help="bf16 rows are added on CPUs with bf16 instructions")
    ap.add_argument("--busy-rows", default="image_fp32_b8,text_fp32_1",
                    help="rows run again beside a busy loop on one core ('' for none)")
    ap.add_argument("--cli", help="the groupvit CLI: also the whole embed job against OpenVINO's")
    ap.add_argument("--photos", type=int, default=96, help="photos of the embed job (default 96)")
    ap.add_argument("--render", type=Path, help="only write the report again from this JSON of an earlier run")
    a = ap.parse_args()
    if a.render:
        result = json.loads(a.render.read_text())
        a.warmup = result.get("warmup", a.warmup)
        a.report.write_text(render(result, a, "image_bf16_b32" in result["table"]))
        print(a.report.read_text())
        return 0
    if not (a.cpp and a.converted and a.hf and a.cache):
        ap.error("--cpp, --converted, --hf and --cache are needed to run the benchmark")
    engines = a.engines.split(",")
    cpu, flags = cpu_info()
    bf16 = has_bf16(flags)
    rows = a.rows.split(",") + (["image_bf16_b32"] if bf16 else [])
    peer_rows = rows + ["image_default_b1", "image_default_b32"]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))

    # The exports, made and checked once (not timed).
    checks = {}
    for engine in ("onnxruntime", "openvino"):
        if engine in engines or engine + "-static" in engines:
            print(f"[peers] {engine}: export and check", file=sys.stderr)
            got, _, took = run([sys.executable, str(HERE / "bench_peers.py"), "--engine", engine, "--model", a.hf,
                                "--cache", str(a.cache), "--prepare"], env)
            checks[engine] = got["export_check"]

    busy_rows = [x for x in a.busy_rows.split(",") if x]
    if a.cli:
        if "openvino" not in checks:
            ap.error("--cli (the embed job) needs the openvino engine")
        photo_dir = photos(a.cache, a.photos)
        job_work = Path(tempfile.mkdtemp(prefix="peers-embed-"))
    rounds = []
    for r in range(a.rounds):
        order = engines[r % len(engines):] + engines[:r % len(engines)]
        got = {}
        for engine in order:
            engine_rows = sorted({engine_row(engine, x, bf16) for x in rows + ["image_default_b1"]}) if engine.startswith(
                "ours") else (
                peer_rows if engine.startswith("openvino") else rows)
            t = time.time()
            out, rss, wall = run(engine_cmd(engine, a, engine_rows), env)
            out["peak_rss_mb"], out["process_wall_s"] = rss, wall
            got[engine] = out
            print(f"[peers] round {r + 1}/{a.rounds}: {engine} in {time.time() - t:.0f}s", file=sys.stderr)
        for engine in order if busy_rows else []:
            rows_busy = sorted({engine_row(engine, x, bf16) for x in busy_rows})
            with busy_neighbour(True):
                got[engine]["busy"], _, _ = run(engine_cmd(engine, a, rows_busy), env)
        print(f"[peers] round {r + 1}/{a.rounds}: beside a busy neighbour done", file=sys.stderr)
        if a.cli:
            job_order = ["ours", "openvino"] if r % 2 == 0 else ["openvino", "ours"]
            got["embed_job"], features = embed_jobs(job_order, a, env, photo_dir, job_work)
            got["embed_job"]["min_cosine"] = cosine_min(features["ours"], features["openvino"])
            print(f"[peers] round {r + 1}/{a.rounds}: embed jobs done", file=sys.stderr)
        rounds.append(got)

    # Paired ratios: engine time / our time within a round, median over rounds.
    def median_s(out, row):
        v = out.get("rows", {}).get(row, {})
        return v.get("median_s")

    # Our bf16 is "native" where its matrix multiply beats fp32's (AMX): elsewhere bench_groupvit times only
    # batch 1 (LibTorch's bf16 GEMM is slower than fp32 there) and our best precision is fp32.
    native = bf16 and all(rd["ours"].get("rows", {}).get("image_bf16_b32", {}).get("native_bf16", False)
                          for rd in rounds if "ours" in rd)

    def comparable(out, name):
        v = out.get("rows", {}).get(name, {})
        return None if v.get("native_bf16") is False else median_s(out, name)

    table = {}
    for row in peer_rows:
        table[row] = {}
        for engine in engines:
            times, ratios, info = [], [], {}
            # Ours in its default precision is the precision it would pick (fp32 without native bf16).
            name = our_row(row, native) if engine == "ours" else engine_row(engine, row, bf16)
            for rd in rounds:
                mine = comparable(rd[engine], name)
                ours = comparable(rd["ours"], our_row(row, native)) if "ours" in rd else None
                v = rd[engine].get("rows", {}).get(name, {})
                info = {k: v[k] for k in ("skipped", "precision", "batch", "native_bf16") if k in v}
                if v.get("native_bf16") is False:
                    info["skipped"] = (f"no native bf16 matrix multiply on this CPU (slower than fp32): batch "
                                       f"{v.get('batch')} took {v['median_s'] * 1e3:.0f} ms")
                if mine is not None:
                    times.append(mine)
                    if ours:
                        ratios.append(mine / ours)
            if times:
                table[row][engine] = {"median_s": statistics.median(times), "ratio_vs_ours": statistics.median(ratios)
                                      if ratios else None, **info}
            elif info:
                table[row][engine] = info
    busy = busy_table(rounds, engines, busy_rows, bf16)
    bf16 = native  # from here on: the precision of our "default" rows
    embed = embed_table(rounds) if a.cli else None
    memory = {e: statistics.median([rd[e]["peak_rss_mb"] for rd in rounds]) for e in engines}
    load = {e: statistics.median([rd[e].get("load_s", float("nan")) for rd in rounds]) for e in engines}
    versions = {e: rounds[0][e].get("version") or f"on LibTorch {rounds[0][e].get('torch')}" for e in engines}
    result = {"cpu": cpu, "cpu_flags": [f for f in flags if f.startswith(("avx", "amx", "fma"))], "threads": a.threads,
              "bf16_instructions": has_bf16(flags), "ours_native_bf16": native,
              "rounds": a.rounds, "reps": a.reps, "warmup": a.warmup, "date": time.strftime("%Y-%m-%d"), "engines": engines, "versions": versions, "export_check": checks,
              "table": table, "busy": busy, "embed_job": embed, "photos": a.photos, "peak_rss_mb": memory, "load_s": load, "raw": rounds}
    a.report.with_suffix(".json").write_text(json.dumps(result, indent=1))
    a.report.write_text(render(result, a, bf16))
    print(a.report.read_text())
    return 0


def busy_table(rounds, engines, busy_rows, bf16):
    """Per busy row and engine: the median time beside the busy loop, its slowdown over the same engine's quiet
    time in the same round, its ratio over ours beside the loop, and (ours) the fewest threads it ran with."""
    table = {}
    for row in busy_rows:
        table[row] = {}
        for engine in engines:
            name = engine_row(engine, row, bf16)
            times, slowdowns, ratios, fewest = [], [], [], []
            for rd in rounds:
                b = rd[engine].get("busy", {}).get("rows", {}).get(name, {})
                q = rd[engine].get("rows", {}).get(name, {})
                o = rd["ours"].get("busy", {}).get("rows", {}).get(our_row(row, bf16), {}) if "ours" in rd else {}
                if "median_s" not in b:
                    continue
                times.append(b["median_s"])
                if "median_s" in q:
                    slowdowns.append(b["median_s"] / q["median_s"])
                if "median_s" in o:
                    ratios.append(b["median_s"] / o["median_s"])
                if "fewest_threads" in b:
                    fewest.append(b["fewest_threads"])
            if times:
                table[row][engine] = {"median_s": statistics.median(times),
                                      "slowdown": statistics.median(slowdowns) if slowdowns else None,
                                      "ratio_vs_ours": statistics.median(ratios) if ratios else None,
                                      **({"fewest_threads": min(fewest)} if fewest else {})}
    return table


def embed_table(rounds):
    """Per engine and condition: median wall, CPU and peak RSS of the embed job; OpenVINO's wall over ours per round."""
    out = {"min_cosine": min(rd["embed_job"]["min_cosine"] for rd in rounds)}
    for engine in ("ours", "openvino"):
        out[engine] = {}
        for cond in ("quiet", "busy"):
            runs = [rd["embed_job"][engine][cond] for rd in rounds]
            out[engine][cond] = {k: statistics.median(r[k] for r in runs) for k in ("wall_s", "cpu_s", "peak_rss_mb")}
            out[engine][cond]["ratio_vs_ours"] = statistics.median(
                rd["embed_job"][engine][cond]["wall_s"] / rd["embed_job"]["ours"][cond]["wall_s"] for rd in rounds)
    return out


def render_busy(res):
    engines = res["engines"]
    lines = ["", "### Beside a busy neighbour", "",
             "The same rows again while a busy loop spins on one core (each engine's run; the loop starts 0.5 s before "
             "it). Cell: the time beside the loop, its slowdown over the same engine's quiet time in the same round, "
             "and its time over ours beside the loop. Ours runs as the CLI does by default: fewer threads while other "
             "processes use the cores (groupvit/runtime/cpu_share.h); `fewest threads` is the fewest it ran with.", "",
             "| row | " + " | ".join(NAMES[e] for e in engines) + " |", "|---|" + "---:|" * len(engines)]
    for row, cells in res["busy"].items():
        out = []
        for e in engines:
            c = cells.get(e)
            if not c:
                out.append("—")
                continue
            s = f"{c['median_s'] * 1e3:.1f} ms"
            if c.get("slowdown"):
                s += f", {c['slowdown']:.2f}x slower"
            if e != "ours" and c.get("ratio_vs_ours"):
                s += f" ({c['ratio_vs_ours']:.2f}x)"
            if "fewest_threads" in c:
                s += f"; fewest threads {c['fewest_threads']}"
            out.append(s)
        lines.append(f"| {TITLES.get(row, row)} | " + " | ".join(out) + " |")
    return lines


def render_embed(res):
    e = res["embed_job"]
    lines = ["", f"### The whole embed job: {res.get('photos', 96)} photos", "",
             "`groupvit embed -i DIR -o FILE.npy --batch-size 32 --dtype auto` (here: "
             f"{'bf16' if res.get('ours_native_bf16') else 'fp32'}, as in the default-precision rows above) against "
             "the same job with OpenVINO in its default precision (bench/embed_job_openvino.py: Pillow decoding, CLIPImageProcessor's steps in Pillow and numpy, "
             "batches of 32); photos are 640x480 JPEGs (bench/pipeline_bench.py's generator); each job a fresh process: load, "
             "decode, preprocess, model, write. Quiet, and beside a busy loop on one core. Ratio: OpenVINO's wall time "
             f"over ours in the same round (above 1: ours is faster). The two jobs' features agree to a cosine of at "
             f"least {e['min_cosine']:.6f}.", "",
             "| job | wall (s) | CPU (s) | peak memory (MiB) | wall, busy neighbour (s) | CPU, busy neighbour (s) |",
             "|---|---:|---:|---:|---:|---:|"]
    for engine in ("ours", "openvino"):
        q, b = e[engine]["quiet"], e[engine]["busy"]
        ratio = lambda c: "" if engine == "ours" else f" ({c['ratio_vs_ours']:.2f}x)"
        lines.append(f"| {NAMES[engine]} | {q['wall_s']:.2f}{ratio(q)} | {q['cpu_s']:.2f} | {q['peak_rss_mb']:.0f} | "
                     f"{b['wall_s']:.2f}{ratio(b)} | {b['cpu_s']:.2f} |")
    o, v = e["ours"]["quiet"]["peak_rss_mb"], e["openvino"]["quiet"]["peak_rss_mb"]
    lines += ["", f"Peak memory, ours over OpenVINO's: {o / v:.2f}x (target: at most 1.5x)."]
    return lines


def render(res, a, bf16):
    engines = res["engines"]
    instructions = res.get("bf16_instructions", bf16)
    bf16 = res.get("ours_native_bf16", bf16)  # the precision of our "default" rows
    lines = [
        "# Peer benchmark: groupvit C++ against transformers, ONNX Runtime and OpenVINO on the CPU",
        "",
        f"Made on {res.get('date', '?')} by `scripts/bench.sh --peers` (bench/peers.py). Same seeded full-size "
        "checkpoint (scripts/make_demo_model.py), `randn` inputs, the same thread count for every engine; each engine "
        "in its own process, turns rotated every round; a ratio is the engine's median time over ours in the same round, "
        "then the median over the rounds (above 1: ours is faster).",
        "",
        f"- CPU: {res['cpu']}; flags: {' '.join(res['cpu_flags']) or 'none listed'}; bf16 instructions: "
        f"{'yes' if instructions else 'no (bf16 rows left out)'}"
        + ("" if bf16 or not instructions else "; no AMX: LibTorch's bf16 matrix multiply is slower than fp32 here, "
           "so our best precision (the default rows' comparison) is fp32"),
        f"- threads: {res['threads']} per engine; {res['rounds']} rounds of {res['reps']} timed runs (after "
        f"{a.warmup} warm-up) per row",
        "- versions: " + "; ".join(f"{NAMES[e]} {res['versions'][e]}" for e in engines),
        "- exports checked against transformers before timing: " + "; ".join(
            f"{e}: image max |diff| {c['image']['max_abs_diff']:.1e}, text {c['text']['max_abs_diff']:.1e}"
            for e, c in res["export_check"].items()),
        "",
        "| row | " + " | ".join(NAMES[e] for e in engines) + " |",
        "|---|" + "---:|" * len(engines),
    ]
    for row, cells in res["table"].items():
        out = []
        for e in engines:
            c = cells.get(e)
            if not c:
                out.append("—")
            elif "median_s" not in c:
                out.append(c.get("skipped", "—"))
            else:
                s = f"{c['median_s'] * 1e3:.1f} ms"
                if e != "ours" and c.get("ratio_vs_ours"):
                    s += f" ({c['ratio_vs_ours']:.2f}x)"
                if c.get("precision") and "default" in row:
                    s += f" [{c['precision']}]"
                out.append(s)
        title = TITLES.get(row, row)
        if "default" in row:
            title += f" (ours: {'bf16' if bf16 else 'fp32'})"
        lines.append(f"| {title} | " + " | ".join(out) + " |")
    lines += [
        f"| load (s) | " + " | ".join(f"{res['load_s'][e]:.2f}" for e in engines) + " |",
        f"| peak memory of the process (MiB) | " + " | ".join(f"{res['peak_rss_mb'][e]:.0f}" for e in engines) + " |",
        "",
        "`--dtype int8` is ours with every Linear layer but the assignment logits' in dynamic int8; its ratio is its "
        "time over our fp32 in the same round (below 1: int8 is faster), and its load row leaves out the int8 packing "
        "done after it (in `docs/benchmarks.md`).",
        "",
        "Load: ours from the converted directory; transformers `from_pretrained`; ONNX Runtime and OpenVINO reading "
        "their exported model (their export is made once beforehand and not counted). Peak memory: the whole process "
        "over all its rows (the peers' processes import transformers for the tokenizer, not torch).",
    ]
    if res.get("busy"):
        lines += render_busy(res)
    if res.get("embed_job"):
        lines += render_embed(res)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
