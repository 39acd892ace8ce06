#!/usr/bin/env python3
"""End-to-end tests of the groupvit CLI on the fixtures of scripts/make_cli_fixtures.py.

    cli_test.py BINARY FIXTURES_DIR WORK_DIR CASE

CASE is one of the functions named test_*; each is its own CTest test. Exit 0 = pass.
"""
import io
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from make_metrics_fixtures import mmseg_scores  # noqa: E402  numpy with mmseg's rules: the one reference

BIN, FIX, WORK = None, None, None
LABELS = "cat,astronaut,cup of coffee,grass,rocket"


def run(*args, expect=0, env=None):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)
    if expect is not None and p.returncode != expect:
        raise AssertionError(f"exit {p.returncode} (expected {expect}) for {args}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def fresh(name):
    d = WORK / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def results(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def check_record(rec, out, names):
    assert set(rec) >= {"input", "key", "width", "height", "mode", "labels", "pixel_share", "outputs", "timings_ms"}, rec
    assert rec["labels"] == ["background"] + names, rec["labels"]
    assert abs(sum(rec["pixel_share"].values()) - 1) < 1e-6, rec["pixel_share"]
    assert set(rec["timings_ms"]) == {"decode_preprocess", "model", "write"}
    orig = Image.open(rec["input"])
    assert (rec["width"], rec["height"]) == orig.size
    lab = Image.open(rec["outputs"]["labels"])
    assert lab.mode == "P" and lab.size == orig.size, (lab.mode, lab.size, orig.size)
    values = np.array(lab)
    assert values.max() <= len(names)
    for i, n in enumerate(["background"] + names):
        share = (values == i).mean()
        assert abs(share - rec["pixel_share"].get(n, 0)) < 1e-9, (n, share, rec["pixel_share"])
    if "overlay" in rec["outputs"]:
        assert Image.open(rec["outputs"]["overlay"]).size == orig.size


def test_schema():
    out = fresh("schema")
    names = LABELS.split(",")
    p = run("info", "--model", FIX / "model", "--json")
    info = json.loads(p.stdout)
    assert info["text"]["vocab_size"] == 49408 and "devices" in info
    p = run("tokenize", "--model", FIX / "model", "--text", "a photo of a cat", "--json")
    assert json.loads(p.stdout)["input_ids"] == [[49406, 320, 1125, 539, 320, 2368, 49407]]
    p = run("similarity", "--model", FIX / "model", "--input", FIX / "images/chelsea.png", FIX / "images/astronaut.jpg",
            "--text", "a photo of a cat", "a photo of a dog", "--json")
    sim = json.loads(p.stdout)
    assert set(sim) == {"images", "texts", "logits_per_image", "probs"}
    assert np.array(sim["probs"]).shape == (2, 2) and np.allclose(np.array(sim["probs"]).sum(1), 1, atol=1e-6)
    p = run("segment", "--model", FIX / "model", "--labels", LABELS, "--input", FIX / "images", "--output", out,
            "--save-groups", "--save-logits", "--json", "--short-side", "96", "--crop-size", "64", "--stride", "32")
    summary = json.loads(p.stdout)
    assert summary["processed"] == 5 and summary["failed"] == 0, summary
    recs = results(out / "results.jsonl")
    assert sorted(r["key"] for r in recs) == sorted(os.listdir(FIX / "images")), recs
    for rec in recs:
        check_record(rec, out, names)
        assert len(rec["outputs"]["groups"]) == 2
        for g in rec["outputs"]["groups"]:
            assert Image.open(g).size == (rec["width"], rec["height"])
        assert np.load(rec["outputs"]["logits"]).shape == (len(names) + 1, rec["height"], rec["width"])
    assert (out / "errors.jsonl").read_text() == ""
    # labels file, templates and png overlays; hf mode (no background channel)
    (out / "labels.txt").write_text("cat\n\n# comment\ndog\n")
    run("segment", "--model", FIX / "model", "--labels-file", out / "labels.txt", "--input", FIX / "images/chelsea.png",
        "--output", out / "hf", "--mode", "hf", "--templates", "subset", "--overlay-format", "png", "--quiet")
    rec = results(out / "hf/results.jsonl")[0]
    check_record(rec, out, ["cat", "dog"])
    assert rec["outputs"]["overlay"].endswith(".png") and "background" not in rec["pixel_share"]


def test_embed():
    out = fresh("embed")
    ref = torch.load(FIX / "refs/embed.pt")
    texts = json.loads((FIX / "manifest.json").read_text())["embed_texts"]
    images = [FIX / "images" / n for n in ref["images"]]
    run("embed", "--model", FIX / "model", "--input", *images, "--text", *texts, "--output", out / "e.json")
    j = json.loads((out / "e.json").read_text())
    assert set(j) == {"images", "texts", "image_embeds", "text_embeds", "normalized"}
    errs = {}
    for key in ("image_embeds", "text_embeds"):
        got, want = np.array(j[key], dtype=np.float32), ref[key].numpy()
        assert got.shape == want.shape, (got.shape, want.shape)
        errs[key] = float(np.abs(got - want).max() / np.abs(want).max())
        assert errs[key] < 1e-4, errs
    run("embed", "--model", FIX / "model", "--input", *images, "--output", out / "i.npy", "--normalize")
    got = np.load(out / "i.npy")
    want = ref["image_embeds"].numpy()
    want = want / np.linalg.norm(want, axis=1, keepdims=True)
    assert np.abs(got - want).max() < 1e-5
    run("embed", "--model", FIX / "model", "--input", images[0], "--text", "x", "--output", out / "b.npy")
    assert np.load(out / "b.image.npy").shape[0] == 1 and np.load(out / "b.text.npy").shape[0] == 1
    # --dtype int8 (dynamic int8 Linear layers): close to float32; test_int8.cpp checks it against quantize_dynamic
    run("embed", "--model", FIX / "model", "--input", *images, "--text", *texts, "--output", out / "q.json",
        "--dtype", "int8")
    q = json.loads((out / "q.json").read_text())
    for key in ("image_embeds", "text_embeds"):
        got, want = np.array(q[key], dtype=np.float64), ref[key].numpy().astype(np.float64)
        cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
        errs["int8 " + key + " min cosine"] = float(cos.min())
        assert cos.min() > 0.99, errs
    # --dtype auto says what it chose, and runs exactly as that --dtype given by hand; without bf16
    # instructions (per /proc/cpuinfo) it must be fp32.
    p = run("embed", "--model", FIX / "model", "--input", *images, "--text", *texts, "--output", out / "a.json",
            "--dtype", "auto")
    said = [line for line in p.stderr.splitlines() if line.startswith("groupvit: --dtype auto: ")]
    assert len(said) == 1, p.stderr
    chosen = said[0].split(": ")[2].split()[0]
    flags = set(Path("/proc/cpuinfo").read_text().split())
    assert chosen in ("fp32", "bf16") and (chosen == "fp32" or {"avx512_bf16", "amx_bf16"} & flags), said
    run("embed", "--model", FIX / "model", "--input", *images, "--text", *texts, "--output", out / "d.json",
        "--dtype", chosen)
    a, d = json.loads((out / "a.json").read_text()), json.loads((out / "d.json").read_text())
    for key in ("image_embeds", "text_embeds"):
        got, same = np.array(a[key], dtype=np.float64), np.array(d[key], dtype=np.float64)
        want = ref[key].numpy().astype(np.float64)
        err = float(np.abs(got - want).max() / np.abs(want).max())
        if chosen == "fp32":  # float32 runs repeat bit for bit
            assert np.array_equal(got, same) and err < 1e-4, (key, err)
        else:  # bf16 picks kernels by timing per process: close to the other bf16 run, not float32-exact
            cos = (got * same).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(same, axis=1)
            assert cos.min() > 0.999 and err > 1e-3, (key, float(cos.min()), err)
    print("embed --dtype auto chose", chosen, "-", said[0])
    print("embed max relative error", errs)


def test_hf_parity():
    out = fresh("hf")
    man = json.loads((FIX / "manifest.json").read_text())
    run("segment", "--mode", "hf", "--model", FIX / "model", "--labels", LABELS, "--save-logits", "--quiet",
        "--input", *[FIX / "images" / n for n in man["hf_images"]], "--output", out, "--batch-size", "2")
    worst = 0.0
    for rec in results(out / "results.jsonl"):
        got = np.load(rec["outputs"]["logits"])
        want = np.load(FIX / "refs" / f"hf_{rec['key']}.npy")
        assert got.shape == want.shape, (got.shape, want.shape)
        err = float(np.abs(got - want).max() / np.abs(want).max())
        print(f"hf {rec['key']}: max abs error {np.abs(got - want).max():.3e}, relative {err:.3e}")
        worst = max(worst, err)
    assert worst < 1e-4, worst


def test_nvlabs_parity():
    man = json.loads((FIX / "manifest.json").read_text())
    for case, o in man["nvlabs_cases"].items():
        out = fresh("nv_" + case)
        args = ["--short-side", o["short"], "--long-side", o["long"], "--crop-size", o["crop"], "--stride", o["stride"]]
        if o["resize"] != "mmcv":  # the default
            args += ["--resize", o["resize"]]
        if o["whole"]:
            args.append("--whole")
        run("segment", "--model", FIX / "model", "--labels", LABELS, "--save-logits", "--quiet", "--input",
            FIX / "images" / o["image"], "--output", out, *args)
        rec = results(out / "results.jsonl")[0]
        got = np.load(rec["outputs"]["logits"])
        want = np.load(FIX / "refs" / f"nv_{case}.npy")
        assert got.shape == want.shape, (case, got.shape, want.shape)
        diff = np.abs(got - want)
        label_agree = (got.argmax(0) == want.argmax(0)).mean()
        print(f"nvlabs {case}: {got.shape}, max abs error {diff.max():.3e}, label agreement {label_agree:.6f}")
        assert diff.max() < 1e-4, case
        assert label_agree == 1.0
        lab = np.array(Image.open(rec["outputs"]["labels"]))
        assert (lab == want.argmax(0)).all()


def test_sizes():
    out = fresh("sizes")
    for extra in ([], ["--whole"], ["--mode", "hf"]):
        d = out / ("_".join(extra) or "slide")
        run("segment", "--model", FIX / "model", "--labels", LABELS, "--input", FIX / "images", "--output", d,
            "--short-side", "80", "--crop-size", "48", "--stride", "32", "--quiet", *extra)
        recs = results(d / "results.jsonl")
        assert len(recs) == 5
        for rec in recs:
            check_record(rec, d, LABELS.split(","))


def test_broken():
    out = fresh("broken")
    p = run("segment", "--model", FIX / "model", "--labels", LABELS, "--input", FIX / "broken", "--output", out,
            "--short-side", "64", "--crop-size", "64", "--stride", "32", "--quiet", expect=3)
    assert "1 failed" in p.stderr, p.stderr
    errs = results(out / "errors.jsonl")
    assert [e["key"] for e in errs] == ["bad.jpg"] and errs[0]["error"], errs
    assert sorted(r["key"] for r in results(out / "results.jsonl")) == ["good0.png", "good1.png", "good2.png"]
    assert not (out / "bad.jpg.labels.png").exists()


def many_inputs(n, name):
    src = WORK / name  # one folder per test: CTest runs tests in parallel
    if not (src / f"img{n - 1:03d}.png").exists():
        src.mkdir(parents=True, exist_ok=True)
        base = Image.open(FIX / "images/chelsea.png").resize((48, 40))
        for i in range(n):
            base.rotate(i * 7).save(src / f"img{i:03d}.png")
    return src


def test_resume():
    src = many_inputs(40, "many_resume")
    out = fresh("resume")
    args = ["segment", "--model", FIX / "model", "--labels", LABELS, "--input", src, "--output", out,
            "--short-side", "48", "--crop-size", "48", "--stride", "48", "--batch-size", "1", "--quiet",
            "--workers", "3", "--writers", "3"]  # several decode and writer threads, all stopped by the signal
    for sig in (signal.SIGTERM, signal.SIGINT):
        p = subprocess.Popen([BIN, *map(str, args + (["--resume"] if sig == signal.SIGINT else []))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        start = len(results(out / "results.jsonl")) if (out / "results.jsonl").exists() else 0
        while time.time() < deadline:
            done = len(results(out / "results.jsonl")) if (out / "results.jsonl").exists() else 0
            if done >= start + 3 or p.poll() is not None:
                break
            time.sleep(0.02)
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
        assert p.returncode in (0, 128 + sig), (p.returncode, err)
        partial = len(results(out / "results.jsonl"))
        print(f"signal {int(sig)}: exit {p.returncode}, {partial} of 40 recorded")
    assert partial < 40, "the run finished before it could be interrupted; make the input larger"
    assert not list(out.glob("*.tmp-*")), "temporary files left behind"
    p = run(*args, "--resume", "--json")
    summary = json.loads(p.stdout)
    keys = [r["key"] for r in results(out / "results.jsonl")]
    assert len(keys) == len(set(keys)) == 40, (len(keys), len(set(keys)))
    assert summary["skipped_done"] == partial and summary["processed"] == 40 - partial, summary
    for k in keys:
        assert (out / f"{k}.labels.png").exists() and (out / f"{k}.overlay.jpg").exists()
    # The interrupted and resumed run gives what one uninterrupted run gives.
    ref = fresh("resume_ref")
    run(*args[:8], ref, *args[9:])
    same_outputs(out, ref)


def test_shards():
    src = many_inputs(40, "many_shards")
    (WORK / "list.txt").write_text("# every other image\n" + "".join(f"{src}/img{i:03d}.png\n" for i in range(0, 40, 2)))
    out = fresh("shards")
    keys = []
    base = ["segment", "--model", FIX / "model", "--labels", "cat,dog", "--output", out, "--short-side", "48",
            "--crop-size", "48", "--stride", "48", "--quiet", "--input", src]
    for i in range(3):
        run(*base, "--shard", f"{i}/3")
        keys.append({r["key"] for r in results(out / f"results.shard-{i}-of-3.jsonl")})
    assert sum(len(k) for k in keys) == 40 and set.union(*keys) == {f"img{i:03d}.png" for i in range(40)}, keys
    # Slurm and Kubernetes defaults pick the same shards as --shard.
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="1", SLURM_ARRAY_TASK_COUNT="3")
    run(*base[:6], out / "slurm", *base[7:], env=env)
    assert {r["key"] for r in results(out / "slurm/results.shard-1-of-3.jsonl")} == keys[1]
    env = dict(os.environ, JOB_COMPLETION_INDEX="2")
    run(*base[:6], out / "k8s", *base[7:], "--shard-count", "3", env=env)
    assert {r["key"] for r in results(out / "k8s/results.shard-2-of-3.jsonl")} == keys[2]
    # @list input: list entries keep their path as the key
    run("segment", "--model", FIX / "model", "--labels", "cat", "--output", out / "list", "--short-side", "48",
        "--crop-size", "48", "--stride", "48", "--quiet", "--input", f"@{WORK / 'list.txt'}", "--shard", "0/1")
    assert len(results(out / "list/results.jsonl")) == 20


def test_errors():
    out = fresh("errors")
    img = FIX / "images/chelsea.png"
    cases = [
        (["segment", "--model", out / "nope", "--labels", "cat", "--input", img, "--output", out], "does not exist"),
        (["segment", "--model", FIX / "model", "--labels", "cat", "--input", img, "--output", out, "--device", "tpu"],
         "unknown device"),
        (["segment", "--model", FIX / "model", "--labels", "cat", "--input", img, "--output", out, "--device", "cuda"],
         "no CUDA device"),
        (["segment", "--model", FIX / "model", "--labels", " , ", "--input", img, "--output", out], "label list is empty"),
        (["segment", "--model", FIX / "model", "--labels", "cat", "--input", out / "missing.jpg", "--output", out],
         "does not exist"),
        (["embed", "--model", FIX / "model", "--text", "x", "--output", out / "x.txt"], "FILE.json, FILE.npy or a directory"),
        (["info", "--model", out / "nope"], "does not exist"),
        (["segment", "--model", FIX / "model", "--labels", "cat", "--input", img, "--output", out, "--shard", "3/3"],
         "out of range"),
        (["segment", "--model", FIX / "model", "--labels", "cat", "--input", img, "--output", out, "--cuda-graphs"],
         "needs --mode hf"),
        (["segment", "--model", FIX / "model", "--labels", "cat", "--input", img, "--output", out, "--cuda-graphs",
          "--mode", "hf"], "needs --device cuda"),
        (["segment", "--model", FIX / "model", "--labels", "cat", "--input", img, "--output", out, "--writers", "-2"],
         "--writers: Value -2 not in range 0 to 256"),
        (["segment", "--model", FIX / "model", "--labels", "cat", "--input", img, "--output", out, "--threads",
          "100000"], "--threads 100000 is out of range"),
        (["embed", "--model", FIX / "model", "--text", "x", "--output", out / "t.json", "--threads", "-1"],
         "--threads -1 is out of range"),
        (["segment", "--model", FIX / "model", "--labels", "cat,dog,cat", "--input", img, "--output", out],
         '"cat" is given twice (entries 1 and 3)'),
        (["segment", "--model", FIX / "model", "--labels", ",".join(f"c{i}" for i in range(255)), "--input", img,
          "--output", out], "at most 254 labels"),
        (["embed", "--model", FIX / "model", "--text", "x", "--output", out / "t.json", "--dtype", "int4"],
         "unknown dtype 'int4' (expected fp32, fp16, bf16, int8 or auto)"),
    ]
    if torch.cuda.is_available():
        cases = [c for c in cases if "no CUDA device" not in c[1]]
    for args, needle in cases:
        p = run(*args, expect=1)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("groupvit: error: ") and needle in lines[0], (args, p.stderr)


def write_huge_png(path, side=20000):
    """A valid 8-bit grey PNG of side x side zero pixels, streamed through zlib (a few hundred KB)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    comp = zlib.compressobj(1)
    row = b"\0" * (side + 1)  # filter byte + pixels
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)) +
                     chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def bad_image_zoo(src):
    """Writes hard and broken image files into src; returns {name: expected error text or None (must work)}."""
    base = Image.open(FIX / "images/chelsea.png").convert("RGB").resize((40, 32))
    good_png, good_jpg = io.BytesIO(), io.BytesIO()
    base.save(good_png, "PNG")
    base.save(good_jpg, "JPEG")
    (src / "zero.png").write_bytes(b"")
    (src / "truncated.png").write_bytes(good_png.getvalue()[: len(good_png.getvalue()) // 2])
    (src / "truncated.jpg").write_bytes(good_jpg.getvalue()[: len(good_jpg.getvalue()) // 2])
    (src / "text.jpg").write_text("this is not an image\n" * 20)
    (src / "random.png").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    frames = [base.rotate(a) for a in (0, 90, 180)]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    write_huge_png(src / "huge.png")
    os.mkfifo(src / "fifo.png")  # opening it would block forever: must be refused, not read
    base.resize((1, 1)).save(src / "one_pixel.png")
    Image.fromarray((np.arange(40 * 32, dtype=np.uint16).reshape(32, 40) * 50)).save(src / "grey16.png")
    base.convert("CMYK").save(src / "cmyk.jpg")
    pal = base.convert("P", palette=Image.ADAPTIVE, colors=16)
    pal.save(src / "palette_trns.png", transparency=0)
    return {
        "zero.png": "empty", "truncated.png": "truncated or corrupt", "truncated.jpg": "truncated JPEG",
        "text.jpg": "not a recognised image", "random.png": "not a recognised image",
        "anim.gif": "not a recognised image", "huge.png": "exceeds the limit", "fifo.png": "not a regular file",
        "one_pixel.png": None, "grey16.png": None, "cmyk.jpg": None, "palette_trns.png": None,
    }


def test_bad_images():
    """A batch of 200 small images with every kind of hard or broken file among them."""
    src = WORK / "zoo"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    base = Image.open(FIX / "images/chelsea.png").resize((24, 20))
    for i in range(200):
        base.rotate(i * 3).save(src / f"img{i:03d}.png")
    expected = bad_image_zoo(src)
    out = fresh("bad_images")
    t = time.time()
    p = run("segment", "--model", FIX / "model", "--labels", "cat,dog", "--input", src, "--output", out,
            "--extensions", "png,jpg,gif", "--short-side", "32", "--crop-size", "32", "--stride", "32",
            "--batch-size", "8", "--quiet", "--json", expect=3)
    bad = {k: v for k, v in expected.items() if v}
    summary = json.loads(p.stdout)
    assert summary["failed"] == len(bad) and summary["processed"] == 200 + len(expected) - len(bad), summary
    assert f"{len(bad)} failed" in p.stderr, p.stderr
    errs = {e["key"]: e for e in results(out / "errors.jsonl")}
    assert set(errs) == set(bad), sorted(errs)
    for key, needle in bad.items():
        print(f"{key}: {errs[key]['error']}")
        assert str(src / key) in errs[key]["error"] and needle in errs[key]["error"], (key, errs[key])
        assert not list(out.glob(key + ".*")), f"outputs written for the broken {key}"
    recs = {r["key"]: r for r in results(out / "results.jsonl")}
    assert set(recs) == {f"img{i:03d}.png" for i in range(200)} | {k for k, v in expected.items() if not v}
    for key in ("one_pixel.png", "grey16.png", "cmyk.jpg", "palette_trns.png"):
        check_record(recs[key], out, ["cat", "dog"])
    assert not list(out.glob("*.tmp-*"))
    print(f"200 images + {len(expected)} hard cases in {time.time() - t:.1f}s")


def test_legend_unicode():
    # The overlay legend draws any UTF-8 label (FreeType/HarfBuzz, apps/text_renderer.h): labels that
    # differ only in non-ASCII characters give different legend pixels (ASCII-only Hershey drew both
    # as "?"), and each differs from a label of U+FFFD, the replacement glyph.
    d = fresh("legend")
    img = d / "img.png"
    Image.open(FIX / "images/chelsea.png").convert("RGB").resize((900, 300)).save(img)  # legend at full size
    legends = {}
    for name in ["café", "cafè", "猫", "犬", "قطة", "كلب", "🐱", "🐶", "\ufffd"]:
        out = d / f"o{len(legends)}"
        p = run("segment", "--model", FIX / "model", "--input", img, "--output", out, "--labels", name,
                "--no-background", "--short-side", "48", "--crop-size", "48", "--stride", "48",
                "--overlay-format", "png", "--quiet")
        assert "warning" not in p.stderr, p.stderr  # every character found a font
        over = np.asarray(Image.open(out / "img.png.overlay.png").convert("RGB")).astype(int)
        legend = over[:40, :300]
        # The legend box: the swatch and the white text over black, not the blended image.
        assert (legend.max(axis=2) > 200).sum() > 20, name
        legends[name] = legend
    names = list(legends)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not np.array_equal(legends[a], legends[b]), f"legends of {a!r} and {b!r} are the same"
    # Colour emoji are drawn in colour (not the grey of text).
    for name in ["🐱", "🐶"]:
        box = legends[name][4:32, 30:90]
        assert (box.max(axis=2) - box.min(axis=2) > 60).sum() > 20, f"{name} has no colour pixels"


def test_flag_aliases():
    # One vocabulary (README "Command line"): short flags give the long ones' results; the old names
    # still work, each with a warning naming the new one.
    d = fresh("aliases")
    img = FIX / "images/chelsea.png"
    new = run("similarity", "-m", FIX / "model", "-t", "1", "-i", img, "--text", "a cat", "a dog", "--json")
    old = run("similarity", "--model", FIX / "model", "--threads", "1", "--image", img, "--text", "a cat", "a dog",
              "--json")
    assert json.loads(new.stdout) == json.loads(old.stdout) and "warning" not in new.stderr, new.stderr
    assert "--image is now -i/--input" in old.stderr and old.stderr.count("warning") == 1, old.stderr
    seg = ["--labels", "cat,dog", "--no-background", "--short-side", "48", "--crop-size", "48", "--stride", "48",
           "--quiet", "--no-overlay"]
    run("segment", "-m", FIX / "model", "-i", FIX / "images", "-o", d / "short", *seg)
    run("segment", "--model", FIX / "model", "--input", FIX / "images", "--output", d / "long", *seg)
    for f in sorted((d / "long").glob("*.labels.png")):
        assert f.read_bytes() == (d / "short" / f.name).read_bytes(), f.name
    # eval: --labels DIR (the ground truth, before --labels meant class names), --classes, --report.
    gt = d / "gt"
    gt.mkdir()
    for f in (d / "long").glob("*.labels.png"):
        shutil.copy(f, gt / f.name.replace(".png.labels.png", ".png").replace(".jpg.labels.png", ".png"))
    (d / "classes.txt").write_text("background\ncat\ndog\n")
    new = run("eval", "--ground-truth", gt, "--labels-file", d / "classes.txt", "--predictions", d / "long",
              "-o", d / "new.json", "--json")
    old = run("eval", "--labels", gt, "--classes", d / "classes.txt", "--predictions", d / "long",
              "--report", d / "old.json", "--json")
    for name in ["eval --labels DIR is now --ground-truth DIR", "--classes is now --labels-file",
                 "--report is now -o/--output"]:
        assert name in old.stderr, (name, old.stderr)
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert strip(json.loads(new.stdout)) == strip(json.loads(old.stdout))
    assert json.loads(new.stdout)["mean_iou"] == 1.0
    assert strip(json.loads((d / "new.json").read_text())) == strip(json.loads((d / "old.json").read_text()))
    # Class names inline, as segment takes them.
    inline = run("eval", "--ground-truth", gt, "--labels", "background,cat,dog", "--predictions", d / "long", "--json")
    assert strip(json.loads(inline.stdout)) == strip(json.loads(new.stdout))
    # Hidden from --help, the new names shown.
    help_text = run("segment", "--help").stdout + run("embed", "--help").stdout + run("eval", "--help").stdout
    assert "-m,--model" in help_text and "-i,--input" in help_text and "-o,--output" in help_text, help_text
    assert "--image " not in help_text and "--classes" not in help_text and "--report " not in help_text


def features(out):
    """get_*_features: a tensor, or in transformers 5 an output whose pooler_output is the features."""
    return out.pooler_output if hasattr(out, "pooler_output") else out


def test_classify():
    # groupvit classify against transformers' zero-shot-image-classification pipeline on the same
    # checkpoint (its Hugging Face layout, as downloaded): same labels in the same order, scores
    # within float32 rounding; then the template ensemble, --top-k, --output with resume.
    from transformers import CLIPImageProcessorPil, CLIPTokenizer, GroupViTModel, pipeline

    d = fresh("classify")
    images = sorted((FIX / "images").iterdir())
    labels = ["cat", "astronaut", "cup of coffee", "grass", "rocket", "猫"]
    # The Pillow processor: the reference of our preprocessing (transformers 5's default is torchvision's).
    proc = CLIPImageProcessorPil.from_pretrained(FIX / "hf")
    clf = pipeline("zero-shot-image-classification", model=str(FIX / "hf"), image_processor=proc, device="cpu")
    for template in [None, "a blurry photo of {}, maybe"]:
        extra = [] if template is None else ["--hypothesis-template", template]
        got = json.loads(run("classify", "-m", FIX / "model", "-i", *images, "--labels", ",".join(labels),
                             "--json", *extra).stdout)
        assert [g["input"] for g in got] == [str(p) for p in images]
        kw = {} if template is None else {"hypothesis_template": template}
        worst = 0.0
        for g, path in zip(got, images):
            want = clf(str(path), candidate_labels=labels, **kw)
            assert [w["label"] for w in want] == [e["label"] for e in g["labels"]], (path, want, g)
            worst = max(worst, max(abs(w["score"] - e["score"]) for w, e in zip(want, g["labels"])))
        assert worst < 2e-6, worst
        print("classify vs pipeline, max score difference", worst, template)
    # Prompt ensembling as segment's --templates (NVlabs' build_text_embedding): the mean of each
    # label's projected text features over the templates, L2-normalised; against transformers'
    # get_text_features / get_image_features.
    templates = d / "templates.txt"
    templates.write_text("a photo of a {}.\na drawing of a {}.\n{} in the wild\n")
    got = json.loads(run("classify", "-m", FIX / "model", "-i", images[0], "--labels", ",".join(labels),
                         "--templates", templates, "--json").stdout)
    model = GroupViTModel.from_pretrained(FIX / "hf").eval()
    tok = CLIPTokenizer.from_pretrained(FIX / "hf")
    with torch.no_grad():
        per_label = []
        for label in labels:
            t = tok([x.format(label) for x in templates.read_text().split("\n") if x], padding=True,
                    return_tensors="pt")
            f = features(model.get_text_features(**t)).mean(0)
            per_label.append(torch.nn.functional.normalize(f, dim=0))
        text = torch.stack(per_label)
        img = features(model.get_image_features(**proc(images=Image.open(images[0]).convert("RGB"),
                                                       return_tensors="pt")))
        img = torch.nn.functional.normalize(img, dim=-1)
        probs = (model.logit_scale.exp() * img @ text.T).softmax(-1)[0]
    want = sorted(zip(probs.tolist(), labels), key=lambda x: -x[0])
    assert [w[1] for w in want] == [e["label"] for e in got[0]["labels"]], (want, got)
    assert max(abs(w[0] - e["score"]) for w, e in zip(want, got[0]["labels"])) < 1e-5
    # --top-k, --output DIR (results.jsonl, resumable), and the errors.
    top = json.loads(run("classify", "-m", FIX / "model", "-i", images[0], "--labels", "cat,dog,cup", "--top-k", "2",
                         "--json").stdout)
    assert len(top[0]["labels"]) == 2
    run("classify", "-m", FIX / "model", "-i", *images[:2], "--labels", "cat,dog", "-o", d / "out", "--quiet")
    run("classify", "-m", FIX / "model", "-i", *images, "--labels", "cat,dog", "-o", d / "out", "--resume", "--quiet")
    recs = results(d / "out/results.jsonl")
    assert sorted(r["key"] for r in recs) == sorted(p.name for p in images), recs
    for bad, why in [(["--labels", "cat,cat"], "twice"), (["--labels", " , "], "is empty"), ([], "candidate labels"),
                     (["--labels", "a", "--top-k", "-1"], "--top-k"), (["--labels", "a", "--resume"], "--resume needs"),
                     (["--labels", "a", "--templates", "simple", "--hypothesis-template", "x {}"], "not both")]:
        p = run("classify", "-m", FIX / "model", "-i", images[0], *bad, expect=1)
        assert why in p.stderr, (bad, p.stderr)


def test_numeric_ranges():
    # Every numeric option has a documented range: outside it, exit 1 with one "groupvit: error:"
    # line naming the option and the range, before any work; settings that cannot mean what the user
    # expects are warned about.
    d = fresh("ranges")
    img = FIX / "images/chelsea.png"
    seg = ["segment", "-m", FIX / "model", "-i", img, "-o", d / "out", "--labels", "cat"]
    cases = [
        (seg + ["--bg-thresh", "1.5"], "--bg-thresh"), (seg + ["--bg-thresh", "-0.1"], "--bg-thresh"),
        (seg + ["--batch-size", "0"], "--batch-size"), (seg + ["--batch-size", "100000"], "--batch-size"),
        (seg + ["--workers", "-1"], "--workers"), (seg + ["--writers", "1000"], "--writers"),
        (seg + ["--top-k", "0"], "--top-k"), (seg + ["--short-side", "0"], "--short-side"),
        (seg + ["--crop-size", "-5"], "--crop-size"), (seg + ["--stride", "0"], "--stride"),
        (seg + ["--progress-interval", "0"], "--progress-interval"), (seg + ["--shard-count", "0"], "--shard-count"),
        (seg + ["--threads", "-1"], "--threads"),
        (["embed", "-m", FIX / "model", "-i", img, "-o", d / "e", "--chunk-size", "0"], "--chunk-size"),
        (["classify", "-m", FIX / "model", "-i", img, "--labels", "a", "--top-k", "-2"], "--top-k"),
        (["eval", "--ground-truth", d, "--labels", "a", "--predictions", d, "--limit", "-1"], "--limit"),
        (["train", "--data", d, "-o", d / "t", "--steps", "0"], "--steps"),
        (["train", "--data", d, "-o", d / "t", "--batch-size", "1"], "--batch-size"),
        (["train", "--data", d, "-o", d / "t", "--lr", "-1"], "--lr"),
        (["train", "--data", d, "-o", d / "t", "--workers", "0"], "--workers"),
        (["train", "--data", d, "-o", d / "t", "--phrases", "-1"], "--phrases"),
    ]
    for args, name in cases:
        p = run(*args, expect=1)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("groupvit: error: ") and name in lines[0], (args, p.stderr)
        assert not (d / "out/results.jsonl").exists(), args
    p = run(*seg, "--mode", "hf", "--templates", "full", "--top-k", "2", "--quiet")
    assert "--templates, --top-k apply to --mode nvlabs only" in p.stderr, p.stderr
    small = ["--short-side", "48", "--crop-size", "48", "--stride", "48", "--quiet"]
    p = run(*seg, "--no-background", "--bg-thresh", "0.5", *small)
    assert "--bg-thresh has no effect with --no-background" in p.stderr, p.stderr
    p = run(*seg, *small)
    assert "warning" not in p.stderr, p.stderr


def test_text_inputs():
    out = fresh("text_inputs")
    model = FIX / "model"
    # Thousands of prompts in one call.
    texts = [f"a photo of thing {i}" for i in range(3000)]
    p = run("tokenize", "--model", model, "--text", *texts, "--json")
    ids = json.loads(p.stdout)["input_ids"]
    assert len(ids) == 3000 and len({len(r) for r in ids}) == 1
    # Invalid UTF-8 (argv and labels file): one error line naming the byte offset, exit 1.
    bad = os.fsencode("caf") + b"\xe9 au lait"
    p = subprocess.run([os.fsencode(BIN), b"tokenize", b"--model", os.fsencode(model), b"--text", bad],
                       capture_output=True, timeout=120)
    err = p.stderr.decode(errors="replace").strip().splitlines()
    assert p.returncode == 1 and len(err) == 1 and "UTF-8 at byte offset 3" in err[0], (p.returncode, err)
    img = FIX / "images/chelsea.png"
    seg = ["segment", "--model", model, "--input", img, "--short-side", "32", "--crop-size", "32", "--stride", "32",
           "--quiet", "--templates", "simple"]
    (out / "bad_utf8.txt").write_bytes(b"cat\n" + bad + b"\n")
    p = run(*seg, "--labels-file", out / "bad_utf8.txt", "--output", out / "u", expect=1)
    assert f"label 2 of {out / 'bad_utf8.txt'}: invalid UTF-8 at byte offset 3" in p.stderr \
        and len(p.stderr.strip().splitlines()) == 1, p.stderr
    # NUL bytes and a 1 MB label (only a file can carry them): tokenized and truncated like any text.
    (out / "odd.txt").write_bytes(b"c\0at\n" + b"dog " * 262144 + b"\n")
    p = run(*seg, "--labels-file", out / "odd.txt", "--output", out / "odd")
    assert len(results(out / "odd/results.jsonl")) == 1
    # 254 labels (the most a label PNG holds besides background 0 and ignore 255) work; 255 and an empty
    # list are refused.
    (out / "many.txt").write_text("".join(f"class {i}\n" for i in range(254)))
    run(*seg, "--labels-file", out / "many.txt", "--output", out / "many")
    assert results(out / "many/results.jsonl")[0]["labels"][-1] == "class 253"
    (out / "too_many.txt").write_text("".join(f"class {i}\n" for i in range(255)))
    p = run(*seg, "--labels-file", out / "too_many.txt", "--output", out / "too_many", expect=1)
    assert "at most 254 labels" in p.stderr
    (out / "empty.txt").write_text("# nothing\n\n")
    p = run(*seg, "--labels-file", out / "empty.txt", "--output", out / "empty", expect=1)
    assert "label list is empty" in p.stderr


def segment_args(src, out, *extra):
    return ["segment", "--model", FIX / "model", "--labels", LABELS, "--input", src, "--output", out,
            "--short-side", "48", "--crop-size", "48", "--stride", "48", "--batch-size", "1", "--quiet", *extra]


def same_outputs(a, b):
    """The label maps and pixel shares of two runs' results, image by image."""
    ra = {r["key"]: r for r in results(a / "results.jsonl")}
    rb = {r["key"]: r for r in results(b / "results.jsonl")}
    assert set(ra) == set(rb), (len(ra), len(rb))
    for k in ra:
        assert ra[k]["pixel_share"] == rb[k]["pixel_share"], k
        assert np.array_equal(np.array(Image.open(a / f"{k}.labels.png")), np.array(Image.open(b / f"{k}.labels.png"))), k


def test_unwritable():
    img = FIX / "images/chelsea.png"
    out = fresh("unwritable")
    (out / "file").write_text("a regular file where a directory should be\n")
    # Root ignores permission bits, so the portable failure is a path through a regular file; the
    # permission case runs too where it can bite (not root).
    cases = [(out / "file" / "out", "file")]
    if os.geteuid() != 0:
        (out / "ro").mkdir()
        (out / "ro").chmod(0o555)
        cases.append((out / "ro" / "out", "Permission denied"))
    else:
        print("running as root: permission bits do not block writes; the regular-file case stands for them")
    for target, needle in cases:
        p = run(*segment_args(img, target), expect=1)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"groupvit: error: --output {target}: ") and needle in lines[0], \
            p.stderr
        p = run("embed", "--model", FIX / "model", "--text", "x", "--output", target / "e.json", expect=1)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("groupvit: error: cannot write " + str(target / "e.json")) \
            and needle in lines[0], p.stderr


def test_disk_full():
    """Writes fail part-way (a file size limit, EFBIG, as a full disk gives ENOSPC): the run stops with
    exit 4 and a clear message, keeps only complete outputs, and --resume completes the rest. Both with
    the model's thread writing (the CPU default) and with three writer threads (the CUDA default), where
    the first writer to hit the limit stops the others and the model thread."""
    src = many_inputs(40, "many_disk_full")
    ref = fresh("disk_full_ref")
    run(*segment_args(src, ref))
    limit = 12 * 1024  # results.jsonl (~700 bytes a line) reaches it after a dozen images

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    for name, threads in (("disk_full", ["--writers", "0"]), ("disk_full_writers", ["--workers", "3", "--writers", "3"])):
        out = fresh(name)
        p = subprocess.run([BIN, *map(str, segment_args(src, out, *threads))], capture_output=True, text=True,
                           timeout=300, preexec_fn=limited)
        assert p.returncode == 4, (p.returncode, p.stderr)
        assert "File too large" in p.stderr and str(out / "results.jsonl") in p.stderr and "--resume" in p.stderr, \
            p.stderr
        text = (out / "results.jsonl").read_text()
        assert text.endswith("\n"), "a partial line was left in results.jsonl"
        recs = results(out / "results.jsonl")
        assert 0 < len(recs) < 40, len(recs)
        for rec in recs:
            check_record(rec, out, LABELS.split(","))
        assert not list(out.glob("*.tmp-*")), "temporary files left behind"
        print(f"{' '.join(threads)}: stopped with exit 4 after {len(recs)} of 40: {p.stderr.strip().splitlines()[0]}")
        p = run(*segment_args(src, out, "--resume", "--json", *threads))
        summary = json.loads(p.stdout)
        assert summary["skipped_done"] == len(recs) and summary["processed"] == 40 - len(recs), summary
        same_outputs(out, ref)


def test_trust():
    """Files the CLI writes: the umask's modes; a second segment into one output directory is refused
    at once (naming the first) while the shards of one run share it; embed's pair of .npy files is
    replaced together or not at all when a write fails."""
    img = FIX / "images/chelsea.png"
    for mask, mode in ((0o022, 0o644), (0o077, 0o600)):
        out = fresh(f"trust_umask{mask:03o}")
        p = subprocess.run([BIN, *map(str, segment_args(img, out / "seg"))], capture_output=True, text=True,
                           timeout=300, preexec_fn=lambda m=mask: os.umask(m))
        assert p.returncode == 0, p.stderr
        modes = {f.name: f.stat().st_mode & 0o777 for f in (out / "seg").iterdir()}
        assert modes and all(m == mode for m in modes.values()), (mask, modes)
        print(f"umask {mask:03o}: segment's files are {mode:o}: {sorted(modes)}")

    src = many_inputs(40, "many_trust")
    out = fresh("trust_lock")
    first = subprocess.Popen([BIN, *map(str, segment_args(src, out))], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "results.jsonl").exists():
        time.sleep(0.02)
    # Stopped, it still holds the lock: the refusals below do not race with it finishing.
    first.send_signal(signal.SIGSTOP)
    p = run(*segment_args(src, out), expect=1)
    assert "being written by another process" in p.stderr and f"pid={first.pid}" in p.stderr \
        and "command=groupvit segment" in p.stderr, p.stderr
    p2 = run(*segment_args(src, out, "--shard", "0/2"), expect=1)  # a shard cannot join an unsharded run
    assert "being written by another process" in p2.stderr, p2.stderr
    first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert len(results(out / "results.jsonl")) == 40
    print("a second segment into the same --output is refused:", p.stderr.strip())
    shards = [subprocess.Popen([BIN, *map(str, segment_args(src, out / "sharded", "--shard", f"{i}/2"))],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for sp in shards:
        assert sp.wait(timeout=300) == 0, sp.stderr.read()
    assert sum(len(results(out / f"sharded/results.shard-{i}-of-2.jsonl")) for i in range(2)) == 40
    print("the two shards of one run write into one directory side by side")

    out = fresh("trust_embed")
    run("embed", "--model", FIX / "model", "--input", img, "--text", "x", "--output", out / "p.npy")
    old = {n: (out / n).read_bytes() for n in ("p.image.npy", "p.text.npy")}
    texts = [f"text {i}" for i in range(8)]
    run("embed", "--model", FIX / "model", "--text", *texts, "--output", out / "eight.npy")
    # Between the sizes of the new image file (1 row) and the new text file (8 rows): the first fits, the second not.
    limit = (len(old["p.image.npy"]) + (out / "eight.npy").stat().st_size) // 2

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    p = subprocess.run([BIN, "embed", "--model", FIX / "model", "--input", img, "--text", *texts,
                        "--output", out / "p.npy"], capture_output=True, text=True, timeout=300, preexec_fn=limited)
    assert p.returncode == 1 and "File too large" in p.stderr, (p.returncode, p.stderr)
    assert {n: (out / n).read_bytes() for n in old} == old, "a failed embed replaced part of the pair"
    assert not list(out.glob("*.tmp-*")), "temporary files left behind"
    print("embed under a file size limit: exit 1, both old files kept:", p.stderr.strip())


# (dataset, image dir, label dir, label suffix, split file or None, background threshold, classes file)
DATASET_LAYOUTS = {
    "voc": ("JPEGImages", "SegmentationClass", ".png", "ImageSets/Segmentation/val.txt", 0.95, "voc.txt"),
    "context": ("JPEGImages", "SegmentationClassContext", ".png", "ImageSets/SegmentationContext/val.txt", 0.35,
                "context.txt"),
    "coco-object": ("images/val2017", "annotations/val2017", "_instanceTrainIds.png", None, 0.95, "coco-object.txt"),
}


def make_dataset(root, name, n_classes, rng):
    """A tree in the dataset's distributed layout: 4 images, their label maps, a split naming 3 of them."""
    images, labels, suffix, split, _, _ = DATASET_LAYOUTS[name]
    (root / images).mkdir(parents=True)
    (root / labels).mkdir(parents=True)
    stems = [f"2008_{i:06d}" if name != "coco-object" else f"{i:012d}" for i in range(4)]
    for i, stem in enumerate(stems):
        h, w = 30 + 7 * i, 41 - 5 * i
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / images / f"{stem}.jpg")
        truth = rng.integers(0, min(n_classes, 6), (h, w)).astype(np.uint8)
        truth[: h // 4, : w // 3] = 255
        Image.fromarray(truth).save(root / labels / f"{stem}{suffix}")
    if split:
        (root / split).parent.mkdir(parents=True)
        (root / split).write_text("\n".join(stems[:3]) + "\n")
        return stems[:3]
    return stems


def test_datasets():
    rng = np.random.default_rng(5)
    for name, (images, labels, suffix, split, bg, classes_file) in DATASET_LAYOUTS.items():
        classes = (ROOT / "datasets" / classes_file).read_text().split("\n")[:-1]
        assert classes[0] == "background", classes_file
        root = fresh(f"datasets/{name}")
        stems = make_dataset(root, name, len(classes), rng)
        # Predictions: right 60% of the time, else any class of the list (some only predicted, never true).
        pred_dir = root / "pred"
        pred_dir.mkdir()
        pairs = []
        for stem in stems:
            truth = np.array(Image.open(root / labels / f"{stem}{suffix}"))
            noise = rng.integers(0, len(classes), truth.shape)
            pred = np.where((rng.random(truth.shape) < 0.6) & (truth != 255), truth, noise).astype(np.uint8)
            Image.fromarray(pred).save(pred_dir / f"{stem}.png")
            pairs.append((truth, pred))
        ref = mmseg_scores(pairs, len(classes))
        iou = np.array([np.nan if v is None else v for v in ref["iou"]])
        miou, acc = ref["mean_iou"], ref["pixel_accuracy"]
        r = run("eval", "--dataset", name, "--root", root, "--predictions", pred_dir, "--json", "--output",
                root / "report.json", "--report-md", root / "report.md")
        got = json.loads(r.stdout)
        assert got["images"] == len(stems), (name, got["images"])  # the split, not every label map
        assert [c["class"] for c in got["classes"]] == classes
        got_iou = np.array([np.nan if c["iou"] is None else c["iou"] for c in got["classes"]])
        assert np.allclose(got_iou, iou, rtol=0, atol=1e-12, equal_nan=True), (name, got_iou, iou)
        assert abs(got["mean_iou"] - miou) < 1e-12 and abs(got["pixel_accuracy"] - acc) < 1e-12
        d = got["dataset"]
        assert d["name"] == name and d["bg_thresh"] == bg and d["label_suffix"] == suffix, d
        assert json.loads((root / "report.json").read_text())["mean_iou"] == got["mean_iou"]
        md = (root / "report.md").read_text()
        assert f"| **mIoU** | **{100 * miou:.2f}** |" in md, md
        assert all(f"| {c} |" in md for c in classes)
        print(f"{name}: {len(stems)} images, {len(classes)} classes, mIoU {miou:.4f} = numpy (mmseg rules)")

    # The model path: eval --dataset equals segment --labels-file datasets/voc.txt + eval --predictions.
    root = WORK / "datasets/voc"
    opts = ["--whole", "--short-side", "48", "--long-side", "96"]
    direct = json.loads(run("eval", "--dataset", "voc", "--root", root, "--model", FIX / "model", "--json",
                            "--quiet", *opts).stdout)
    assert direct["settings"]["bg_thresh"] == 0.95 and direct["settings"]["resize"] == "mmcv", direct["settings"]
    seg = fresh("datasets/voc-seg")
    stems = (root / "ImageSets/Segmentation/val.txt").read_text().split()
    run("segment", "--model", FIX / "model", "--labels-file", ROOT / "datasets/voc.txt", "--output", seg,
        "--quiet", "--no-overlay", *opts, "--input", *[root / "JPEGImages" / f"{s}.jpg" for s in stems])
    rec = results(seg / "results.jsonl")[0]
    assert rec["labels"][:3] == ["background", "aeroplane", "bicycle"], rec["labels"]  # line 0: not a prompt
    saved = json.loads(run("eval", "--dataset", "voc", "--root", root, "--predictions", seg, "--json").stdout)
    assert saved["mean_iou"] == direct["mean_iou"], (saved["mean_iou"], direct["mean_iou"])
    # An explicit --bg-thresh wins over the preset's; the preset refuses what it sets itself.
    ctx = json.loads(run("eval", "--dataset", "context", "--root", WORK / "datasets/context", "--model",
                         FIX / "model", "--json", "--quiet", "--limit", "1", "--bg-thresh", "0.5", *opts).stdout)
    assert ctx["settings"]["bg_thresh"] == 0.5 and ctx["images"] == 1, ctx
    for bad, why in [(["--dataset", "voc"], "needs --root"),
                     (["--dataset", "voc", "--root", root, "--ground-truth", root], "--dataset sets"),
                     (["--root", root, "--ground-truth", root, "--labels-file", ROOT / "datasets/voc.txt"], "--root goes with"),
                     (["--dataset", "voc", "--root", root / "missing"], "is not a directory")]:
        r = run("eval", "--predictions", root / "pred", *bad, expect=1)
        assert why in r.stderr, (bad, r.stderr)
    help_text = run("eval", "--help").stdout
    assert "context: PASCAL Context val (59 classes)" in help_text and "--bg-thresh 0.35" in help_text


def main():
    global BIN, FIX, WORK
    BIN, FIX, WORK = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    WORK.mkdir(parents=True, exist_ok=True)
    t = time.time()
    globals()["test_" + sys.argv[4]]()
    print(f"{sys.argv[4]}: passed in {time.time() - t:.1f}s")


if __name__ == "__main__":
    main()
