#!/usr/bin/env python3
"""Merges the C++ and reference benchmark JSON into docs/benchmarks.md and a JSON file.

    bench/report.py WORK_DIR OUT_MD OUT_JSON
"""
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROWS = [
    ("image_fp32_b1", "image features, batch 1, fp32"),
    ("image_fp32_b8", "image features, batch 8, fp32"),
    ("image_fp32_b32", "image features, batch 32, fp32"),
    ("text_fp32_1", "text features, 1 prompt, fp32"),
    ("text_fp32_80", "text features, 80 prompts, fp32"),
    ("seg_hf_224", "HF segmentation at 224 (1 image, 6 labels)"),
    ("seg_nvlabs_640x480", "NVlabs-style segmentation, 640x480 photo (448 short side, 2 windows)"),
]


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() or "unknown"
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return [f for f in flags if f.startswith(("avx", "amx", "fma"))]
    except OSError:
        pass
    return []


def machine_of(cpp):
    """The machine, threads, torch and commit of a bench_groupvit run (its JSON output)."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "simd": cpu_flags(), "threads": cpp["threads"],
            "torch": cpp["torch"], "device": cpp["device"],
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True).stdout.strip()}


def allocator_section(work, cpp, ref):
    """Ours with and without the CLI's malloc setting, the reference without and with it."""
    files = [work / "cpp_system_malloc.json", work / "ref_keep_freed_memory.json"]
    if not all(f.exists() for f in files):
        return []
    cpp_sys, ref_keep = (json.loads(f.read_text()) for f in files)
    lines = ["", "## The allocator setting", "",
             "Ours runs with `groupvit::keep_freed_memory_for_reuse()` (what the CLI does after loading: glibc keeps "
             "freed blocks up to 1 GiB in the heap instead of mmapping and page-faulting large activations on every "
             "forward; groupvit/runtime/allocator.h). The same image rows with and without it on each side (the reference "
             "sets it through ctypes), from separate processes run right after the table's:", "",
             "| row | ours | ours, system malloc | reference | reference with the setting |", "|---|---|---|---|---|"]
    for key in ("image_fp32_b1", "image_fp32_b32"):
        cells = [side["rows"].get(key) for side in (cpp, cpp_sys, ref, ref_keep)]
        if all(cells):
            lines.append(f"| {key} | " + " | ".join(f"{c['median_s'] * 1000:.1f} ms" for c in cells) + " |")
    return lines


def int8_section(cpp):
    """--dtype int8 (dynamic int8 Linear layers) against our own fp32 rows of the same run."""
    rows = cpp["rows"]
    pairs = [(f"image_int8_b{b}", f"image_fp32_b{b}", f"image features, batch {b}") for b in (1, 8, 32)]
    pairs += [(f"text_int8_{n}", f"text_fp32_{n}", f"text features, {n} prompt{'s' if n > 1 else ''}") for n in (1, 80)]
    pairs = [p for p in pairs if p[0] in rows and p[1] in rows]
    if not pairs:
        return []
    lines = ["", "## int8 (`--dtype int8`)", "",
             "Every Linear layer but the assignment logits' in dynamic int8 (LibTorch's quantized engine), against "
             "our fp32 in the same run.", "", "| row | int8 | fp32 | speed-up over fp32 |", "|---|---|---|---|"]
    for q, f, label in pairs:
        lines.append(f"| {label} | {rows[q]['median_s'] * 1000:.1f} ms | {rows[f]['median_s'] * 1000:.1f} ms | "
                     f"{rows[f]['median_s'] / rows[q]['median_s']:.2f}× |")
    acc = rows.get("int8_accuracy")
    if acc:
        lines += ["", f"Against fp32 on {acc['images']} random-noise images: image embeddings min cosine "
                      f"{acc['min_cosine']:.5f}, hard assignment agreement {acc['assignment_agreement']:.2%}; engine "
                      f"{acc['qengine']}, quantizing the loaded model took {acc['quantize_s'] * 1000:.0f} ms."]
    return lines


def peers_section(peers_json):
    """The latest peer run (scripts/bench.sh --peers, docs/peers.md), its table repeated here."""
    if not peers_json.exists():
        return []
    import types

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import peers

    res = json.loads(peers_json.read_text())
    text = peers.render(res, types.SimpleNamespace(warmup=res.get("warmup", 1)), peers.has_bf16(res["cpu_flags"]))
    body = text.split("\n", 1)[1]  # its own title
    return ["", f"## Peers: ONNX Runtime, OpenVINO, transformers (the run of {res.get('date', '?')}, docs/peers.md)",
            body.rstrip()]


def main():
    work, out_md, out_json = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    cpp = json.loads((work / "cpp.json").read_text())
    ref = json.loads((work / "ref.json").read_text())
    cpp_load = json.loads((work / "cpp_load.json").read_text())
    ref_load = json.loads((work / "ref_load.json").read_text())
    machine = machine_of(cpp)
    lines = ["# Benchmarks", "",
             "Written by `scripts/bench.sh` (medians of timed repetitions after warm-ups; min–max in brackets).",
             "Ours is the C++ port; the reference is Hugging Face `transformers` eager on the same machine, the same",
             "seeded full-size checkpoint (gcc-yfcc sizes), the same inputs and the same thread count.",
             "Both sides run in one invocation; on a shared 2-core virtual machine repeated runs vary by about",
             "10-15%, so ratios near 1 are ties.", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores ({', '.join(machine['simd'])}), "
             f"{machine['threads']} threads, torch {machine['torch']}, device {machine['device']}, "
             f"commit {machine['commit']}.", "",
             "| row | ours | reference | ours/reference time | speed-up |", "|---|---|---|---|---|"]
    table = {}
    for key, label in ROWS:
        a, b = cpp["rows"].get(key), ref["rows"].get(key)
        if not a or not b:
            continue
        ratio = a["median_s"] / b["median_s"]
        table[key] = {"ours": a, "reference": b, "ratio": ratio}
        fmt = lambda r: f"{r['median_s'] * 1000:.1f} ms [{r['min_s'] * 1000:.1f}–{r['max_s'] * 1000:.1f}]"
        lines.append(f"| {label} | {fmt(a)} | {fmt(b)} | {ratio:.2f} | {1 / ratio:.2f}× |")
    lines.append(f"| model load (warm page cache) | {cpp_load['load_s'] * 1000:.0f} ms | "
                 f"{ref_load['load_s'] * 1000:.0f} ms | {cpp_load['load_s'] / ref_load['load_s']:.2f} | "
                 f"{ref_load['load_s'] / cpp_load['load_s']:.2f}× |")
    lines.append(f"| peak resident memory after load | {cpp_load['load_peak_rss_mb']:.0f} MB | "
                 f"{ref_load['load_peak_rss_mb']:.0f} MB | | |")
    if "weights_mb" in cpp_load:
        grew = cpp_load["load_peak_rss_mb"] - cpp_load["rss_before_load_mb"]
        lines += ["", f"Loading raised our peak resident memory by {grew:.0f} MB for {cpp_load['weights_mb']:.0f} MB of "
                      f"fp32 weights ({grew / cpp_load['weights_mb']:.2f}× the weights; the process held "
                      f"{cpp_load['rss_before_load_mb']:.0f} MB before, mostly LibTorch's code). The reference went "
                      f"from {ref_load['rss_before_load_mb']:.0f} MB to {ref_load['load_peak_rss_mb']:.0f} MB."]
    lines += ["", "## Against the machine's ceiling", ""]
    g32 = cpp["rows"].get("gemm_fp32", {}).get("gflops")
    g16 = cpp["rows"].get("gemm_bf16", {}).get("gflops")
    for key in ("image_fp32_b1", "image_fp32_b8", "image_fp32_b32"):
        r = cpp["rows"].get(key)
        if r and g32:
            lines.append(f"- {key}: {r['images_per_s']:.1f} images/s, {r['gflops']:.1f} GFLOP/s = "
                         f"{r['gflops'] / g32:.0%} of the measured fp32 matrix-multiply rate ({g32:.1f} GFLOP/s, "
                         "best of 15 multiplies of 2048x2048)")
    if g16:
        lines.append(f"- bf16 matrix multiply (1024³): {g16:.1f} GFLOP/s")
    b16 = cpp["rows"].get("image_bf16_b32")
    flops = cpp.get("image_flops_per_image")
    acc = cpp["rows"].get("bf16_accuracy")
    if b16 and "image_fp32_b32" in cpp["rows"]:
        fp32_rate = cpp["rows"]["image_fp32_b32"]["images_per_s"]
        lines.append(f"- image features in bf16 (batch {b16['batch']}): {b16['images_per_s']:.2f} images/s = "
                     f"{b16['images_per_s'] / fp32_rate:.2f}× our fp32 batch-32 rate"
                     + (f", {b16['images_per_s'] * flops / 1e9:.1f} GFLOP/s = "
                        f"{b16['images_per_s'] * flops / 1e9 / g16:.0%} of the measured bf16 matrix-multiply rate"
                        if b16.get("native_bf16") and g16 and flops else "")
                     + ("" if b16.get("native_bf16") else " (no native bf16 matrix multiply on this CPU: "
                        "LibTorch's fallback kernel; one timed pass)"))
    b16_1 = cpp["rows"].get("image_bf16_b1")
    if b16_1 and "image_fp32_b1" in cpp["rows"]:
        lines.append(f"- image features in bf16 (batch 1): {b16_1['median_s'] * 1e3:.1f} ms = "
                     f"{cpp['rows']['image_fp32_b1']['median_s'] / b16_1['median_s']:.2f}× faster than our fp32 batch 1")
    if acc:
        lines.append(f"- bf16 against fp32 ({acc['images']} random-noise images): image embeddings min cosine "
                     f"{acc['min_cosine']:.5f}, hard assignment agreement {acc['assignment_agreement']:.2%} "
                     "(assignment logits are float32 in every dtype; noise images have no objects, so their "
                     "groups are near-ties: a harsh case)")
    post = cpp["rows"].get("seg_postprocess")
    seg = cpp["rows"].get("seg_nvlabs_640x480")
    if post and seg:
        total = seg["median_s"] + post["png_encode_s"]
        rest = max(total - post["windows_forward_s"], 0.0)
        lines += ["", "## Segmentation post-processing", "",
                  f"NVlabs-style segmentation of a 640x480 photo: {total * 1000:.0f} ms per image, of which the model's "
                  f"two window passes take {post['windows_forward_s'] * 1000:.0f} ms; grouping, resizing to the "
                  f"original size, class scoring, argmax and PNG encoding ({post['png_encode_s'] * 1000:.1f} ms) take "
                  f"the remaining {rest * 1000:.0f} ms = {rest / total:.0%} of the per-image time."]
    lines += int8_section(cpp)
    lines += allocator_section(work, cpp, ref)
    comp = {k: v for k, v in ref["rows"].items() if k.startswith("compiled_")}
    if comp:
        lines += ["", "## torch.compile of the reference", ""]
        for k, v in comp.items():
            base = k.replace("compiled_", "")
            lines.append(f"- {base}: {v['median_s'] * 1000:.1f} ms compiled; ours/compiled "
                         f"{cpp['rows'][base]['median_s'] / v['median_s']:.2f}")
    if "compile_error" in ref:
        lines.append(f"- torch.compile failed: {ref['compile_error']}")
    lines += peers_section(out_md.parent / "peers.json")
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text("\n".join(lines) + "\n")
    out_json.write_text(json.dumps({"machine": machine, "rows": table, "ours": cpp, "reference": ref,
                                    "load": {"ours": cpp_load, "reference": ref_load}}, indent=1))


if __name__ == "__main__":
    main()
