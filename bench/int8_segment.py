#!/usr/bin/env python3
"""What `--dtype int8` changes in what users get from `groupvit segment`: label agreement with fp32
on real photos. Not a test: a report (issue 20's "label agreement of segment on real photos").

    bench/int8_segment.py --cli build/apps/groupvit --full-size build/bench/model/converted
                          [--trained weights/synthetic-scenes] [--work build/bench/int8-segment]
                          [--threads 2] [--report docs/int8-segment.md]

The photos are the ones bundled in the scikit-image wheel (greyscale ones as RGB). Two models:

- the offline default model (weights/synthetic-scenes, trained here on coloured shapes: it knows six
  colours), segmenting with its six colour names in the nvlabs mode its README evaluates with; also
  `groupvit eval` of 200 held-out synthetic scenes (scripts/make_scenes.py) in fp32 and int8: the
  accuracy the quantization costs where there is ground truth;
- the full-size seeded model of the speed benchmark (nvidia/groupvit-gcc-yfcc's sizes, untrained),
  segmenting with everyday labels in the default (hf) mode: its predictions mean nothing, but it has
  the sizes whose speed docs/peers.md reports.

Each photo goes through `groupvit segment` twice, in one process per dtype (--dtype fp32 / int8, the
same --threads), writing KEY.labels.png and, with --save-groups, each stage's group map. Reported per
photo and over all pixels: the fraction of pixels with the same label, the fraction in the same group
(per stage: the hard assignment as the user sees it), and the image embeddings' cosine
(`groupvit embed`). Label maps are read back with Pillow.
"""
import argparse
import json
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import cpu_info  # noqa: E402  (the one CPU description of the reports)

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "colorwheel", "camera", "coins", "moon")
COLOURS = "red,green,blue,yellow,purple,cyan"
EVERYDAY = "person,cat,dog,cup,rocket,plant,sky,building,grass,water,table,car"


def write_photos(out):
    import skimage.data

    out.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        path = out / f"{name}.png"
        if not path.exists():
            Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(path)
    return sorted(out.glob("*.png"))


def run(cmd):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"int8_segment: {' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stderr}")
    return p.stdout


def indices(path):
    """A paletted PNG's indices (the label or group per pixel)."""
    with Image.open(path) as im:
        assert im.mode == "P", (path, im.mode)
        return np.asarray(im)


def embeddings(path, images):
    """{photo: image embedding} from embed's FILE.json (rows in input order)."""
    rows = json.loads(path.read_text())["image_embeds"]
    return {p.name: np.asarray(r, dtype=np.float64) for p, r in zip(images, rows)}


def compare(a, cli, model, images, labels, seg_opts, work):
    runs = {}
    for dtype in ("fp32", "int8"):
        seg, emb = work / f"segment-{dtype}", work / f"embed-{dtype}.json"
        shutil.rmtree(seg, ignore_errors=True)  # a fresh run, not a resumed one
        common = ["--model", model, "--dtype", dtype, "--threads", a.threads, "--quiet"]
        run([cli, "segment", *common, "--input", *images, "--labels", labels, *seg_opts, "--save-groups",
             "--no-overlay", "--output", seg])
        run([cli, "embed", *common, "--input", *images, "--output", emb])
        runs[dtype] = (seg, embeddings(emb, images))
    rows, same_label, same_group, pixels = [], 0, {}, 0
    for key in sorted(runs["fp32"][1]):
        f32 = indices(runs["fp32"][0] / f"{key}.labels.png")
        i8 = indices(runs["int8"][0] / f"{key}.labels.png")
        row = {"photo": key, "pixels": int(f32.size), "label_agreement": float((f32 == i8).mean())}
        same_label += int((f32 == i8).sum())
        pixels += f32.size
        for g in sorted(runs["fp32"][0].glob(f"{key}.groups*.png")):
            stage = g.name[len(key) + len(".groups"):-len(".png")]
            eq = indices(g) == indices(runs["int8"][0] / g.name)
            row[f"group_agreement_{stage}"] = float(eq.mean())
            same_group[stage] = same_group.get(stage, 0) + int(eq.sum())
        e32, e8 = runs["fp32"][1][key], runs["int8"][1][key]
        row["embedding_cosine"] = float(e32 @ e8 / (np.linalg.norm(e32) * np.linalg.norm(e8)))
        rows.append(row)
    total = {"label_agreement": same_label / pixels, "embedding_cosine_min": min(r["embedding_cosine"] for r in rows)}
    total.update({f"group_agreement_{s}": n / pixels for s, n in same_group.items()})
    return {"rows": rows, "total": total, "labels": labels, "options": seg_opts}


def evaluate(a, cli, model, work):
    """groupvit eval of held-out scenes in both dtypes, colour names (the model README's command)."""
    scenes = work / "scenes"
    if not (scenes / "val" / "images").is_dir():
        run([sys.executable, ROOT / "scripts" / "make_scenes.py", scenes, "--train", 0, "--val", 200, "--size", 36,
             "--seed", 12345])
    scores = {}
    for dtype in ("fp32", "int8"):
        out = work / f"eval-{dtype}.json"
        run([cli, "eval", "--model", model, "--input", scenes / "val" / "images", "--templates",
             Path(model) / "templates.txt", "--whole", "--short-side", 36, "--top-k", 3, "--bg-thresh", 0.95,
             "--quiet", "--threads", a.threads, "--dtype", dtype, "--ground-truth", scenes / "val" / "labels_colour",
             "--labels-file", scenes / "val" / "classes_colour.txt", "--output", out])
        scores[dtype] = json.loads(out.read_text())
    return scores


def render(res):
    lines = [
        "# int8 `segment` against fp32 on real photos",
        "",
        "Written by `bench/int8_segment.py` (`scripts/bench.sh --int8`); " + res["when"] + ".",
        "",
        f"- CPU: {res['cpu']} ({res['threads']} threads); quantized engine as LibTorch picks it (FBGEMM here)",
        "- photos: the ones bundled in scikit-image (" + ", ".join(PHOTOS) + "), greyscale ones as RGB",
        "- agreement: the fraction of pixels given the same label (or the same group of a grouping stage, the",
        "  hard assignment as `--save-groups` writes it) by `--dtype int8` as by fp32; cosine: `embed`'s image",
        "  embeddings",
        "",
    ]
    for name, r in res["models"].items():
        t = r["total"]
        stages = sorted(k for k in t if k.startswith("group_agreement_"))
        options = " ".join(str(o).replace(str(ROOT) + "/", "") for o in r["options"])
        lines += [f"## {name}", "", f"labels `{r['labels']}`, options `{options}`", ""]
        if "untrained" in name:
            lines += ["An untrained model's label scores are near ties (each photo gets one label everywhere), so",
                      "its label agreement counts ties that quantization noise tips, not what a trained model",
                      "loses; its group maps and embeddings are the comparison that carries over.", ""]
        lines += [ "| photo | pixels | label agreement | " + " | ".join(f"stage {s[-1]} groups" for s in stages) +
                  " | embedding cosine |", "|---|---|---|" + "---|" * len(stages) + "---|"]
        for row in r["rows"]:
            lines.append(f"| {row['photo']} | {row['pixels']} | {row['label_agreement']:.4f} | " +
                         " | ".join(f"{row.get(s, float('nan')):.4f}" for s in stages) +
                         f" | {row['embedding_cosine']:.5f} |")
        lines.append(f"| **all pixels** | | **{t['label_agreement']:.4f}** | " +
                     " | ".join(f"{t[s]:.4f}" for s in stages) + f" | min {t['embedding_cosine_min']:.5f} |")
        lines.append("")
    if res.get("eval"):
        ev = res["eval"]
        lines += ["## Held-out synthetic scenes (ground truth): `groupvit eval`, offline default model", "",
                  "200 scenes of `make_scenes.py --seed 12345` (not the training seed), colour names, the model "
                  "README's options.", "", "| dtype | mIoU | pixel accuracy | foreground pixel accuracy |",
                  "|---|---|---|---|"]
        for dtype, s in ev.items():
            lines.append(f"| {dtype} | {s['mean_iou']:.4f} | {s['pixel_accuracy']:.4f} | {s['foreground_accuracy']:.4f} |")
        lines.append("")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cli", default=ROOT / "build" / "apps" / "groupvit", type=Path)
    p.add_argument("--full-size", required=True, type=Path, help="converted full-size model directory")
    p.add_argument("--trained", default=ROOT / "weights" / "synthetic-scenes", type=Path)
    p.add_argument("--work", default=ROOT / "build" / "bench" / "int8-segment", type=Path)
    p.add_argument("--threads", default=2, type=int)
    p.add_argument("--report", default=ROOT / "docs" / "int8-segment.md", type=Path)
    a = p.parse_args()
    images = write_photos(a.work / "photos")
    model, flags = cpu_info()
    res = {"cpu": model, "flags": [f for f in flags if f.startswith(("avx", "amx"))], "threads": a.threads,
           "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "models": {}}
    res["models"]["offline default model (weights/synthetic-scenes, trained)"] = compare(
        a, a.cli, a.trained, images, COLOURS,
        ["--templates", a.trained / "templates.txt", "--whole", "--short-side", 36, "--top-k", 3, "--bg-thresh", 0.95],
        a.work / "trained")
    res["models"]["full-size seeded model (untrained)"] = compare(a, a.cli, a.full_size, images, EVERYDAY,
                                                                   ["--mode", "hf"], a.work / "full-size")
    res["eval"] = evaluate(a, a.cli, a.trained, a.work / "trained")
    text = render(res)
    a.report.write_text(text + "\n")
    a.report.with_suffix(".json").write_text(json.dumps(res, indent=1, default=str).replace(str(ROOT) + "/", "") + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
