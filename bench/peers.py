#!/usr/bin/env python3
"""The peer benchmark: ours (bench_groupvit) against transformers eager, ONNX Runtime and OpenVINO
(bench_peers.py) on this machine, same seeded checkpoint, inputs and threads. Each engine runs in a
process of its own; the engines take turns in an order rotated every round, and every ratio is taken
within one round (the engine's time over ours in that round), then the median over the rounds: the
hosts here change speed during long runs, so times from different moments do not compare.
Writes a Markdown report and its JSON.

    bench/peers.py --cpp BENCH_GROUPVIT --converted DIR --hf DIR --cache DIR --report docs/peers.md
                   [--threads N] [--rounds 3] [--reps 3] [--engines ours,transformers,onnxruntime,openvino,...]
                   [--rows image_fp32_b1,...]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def run(cmd, env=None):
    """(JSON it printed, its peak RSS in MiB, wall seconds); raises with its stderr on failure."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(p.pid, 0)  # the child's own peak RSS (getrusage's is the largest child's)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        text, errors = out.read(), err.read().decode(errors="replace")
    if p.returncode != 0:
        raise SystemExit(f"peers: {' '.join(map(str, cmd[:4]))} ... failed ({p.returncode}):\n{errors[-3000:]}")
    return json.loads(text), usage.ru_maxrss / 1024.0, time.perf_counter() - t0


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

    rounds = []
    for r in range(a.rounds):
        order = engines[r % len(engines):] + engines[:r % len(engines)]
        got = {}
        for engine in order:
            engine_rows = sorted({engine_row(engine, x, bf16) for x in rows}) if engine.startswith("ours") else (
                peer_rows if engine.startswith("openvino") else rows)
            t = time.time()
            out, rss, wall = run(engine_cmd(engine, a, engine_rows), env)
            out["peak_rss_mb"], out["process_wall_s"] = rss, wall
            got[engine] = out
            print(f"[peers] round {r + 1}/{a.rounds}: {engine} in {time.time() - t:.0f}s", file=sys.stderr)
        rounds.append(got)

    # Paired ratios: engine time / our time within a round, median over rounds.
    def median_s(out, row):
        v = out.get("rows", {}).get(row, {})
        return v.get("median_s")

    table = {}
    for row in peer_rows:
        table[row] = {}
        for engine in engines:
            times, ratios, info = [], [], {}
            name = engine_row(engine, row, bf16)
            for rd in rounds:
                mine = median_s(rd[engine], name)
                ours = median_s(rd["ours"], our_row(row, bf16)) if "ours" in rd else None
                v = rd[engine].get("rows", {}).get(name, {})
                info = {k: v[k] for k in ("skipped", "precision", "batch", "native_bf16") if k in v}
                if mine is not None:
                    times.append(mine)
                    if ours:
                        ratios.append(mine / ours)
            if times:
                table[row][engine] = {"median_s": statistics.median(times), "ratio_vs_ours": statistics.median(ratios)
                                      if ratios else None, **info}
            elif info:
                table[row][engine] = info
    memory = {e: statistics.median([rd[e]["peak_rss_mb"] for rd in rounds]) for e in engines}
    load = {e: statistics.median([rd[e].get("load_s", float("nan")) for rd in rounds]) for e in engines}
    versions = {e: rounds[0][e].get("version") or f"on LibTorch {rounds[0][e].get('torch')}" for e in engines}
    result = {"cpu": cpu, "cpu_flags": [f for f in flags if f.startswith(("avx", "amx", "fma"))], "threads": a.threads,
              "rounds": a.rounds, "reps": a.reps, "warmup": a.warmup, "date": time.strftime("%Y-%m-%d"), "engines": engines, "versions": versions, "export_check": checks,
              "table": table, "peak_rss_mb": memory, "load_s": load, "raw": rounds}
    a.report.with_suffix(".json").write_text(json.dumps(result, indent=1))
    a.report.write_text(render(result, a, bf16))
    print(a.report.read_text())
    return 0


def render(res, a, bf16):
    engines = res["engines"]
    lines = [
        "# Peer benchmark: groupvit C++ against transformers, ONNX Runtime and OpenVINO on the CPU",
        "",
        f"Made on {res.get('date', '?')} by `scripts/bench.sh --peers` (bench/peers.py). Same seeded full-size "
        "checkpoint (scripts/make_demo_model.py), `randn` inputs, the same thread count for every engine; each engine "
        "in its own process, turns rotated every round; a ratio is the engine's median time over ours in the same round, "
        "then the median over the rounds (above 1: ours is faster).",
        "",
        f"- CPU: {res['cpu']}; flags: {' '.join(res['cpu_flags']) or 'none listed'}; bf16 instructions: "
        f"{'yes' if bf16 else 'no (bf16 rows left out)'}",
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
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
