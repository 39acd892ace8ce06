#!/usr/bin/env python3
"""End-to-end tests of the batch engine (apps/batch/) through the groupvit CLI: keys, symlink loops,
outputs inside inputs, standard input, WebDataset shards, embed and similarity as batch tools, and
the shard/partition rules. On the fixtures of scripts/make_cli_fixtures.py.

    batch_test.py BINARY FIXTURES_DIR WORK_DIR CASE

CASE is one of the functions named test_*; each is its own CTest test. Exit 0 = pass.
"""
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cli_test as base  # noqa: E402  run, fresh, results, many_inputs, same_outputs
from cli_test import fresh, results, run  # noqa: E402

SEG = ["--labels", "cat,dog", "--short-side", "48", "--crop-size", "48", "--stride", "48", "--quiet"]


def segment(src, out, *extra, expect=0, **kw):
    return run("segment", "--model", base.FIX / "model", "--input", *([src] if not isinstance(src, list) else src),
               "--output", out, *SEG, *extra, expect=expect, **kw)


def label_map(path):
    return np.array(Image.open(path))


def test_keys():
    d = fresh("keys")
    (d / "a").mkdir()
    (d / "b").mkdir()
    src = Image.open(base.FIX / "images/chelsea.png")
    src.resize((64, 48)).save(d / "a/x.png")
    src.resize((70, 53)).save(d / "b/x.png")
    # Two different images with one key: refused before any work, naming both.
    p = segment([d / "a/x.png", d / "b/x.png"], d / "out", expect=1)
    assert str(d / "a/x.png") in p.stderr and str(d / "b/x.png") in p.stderr and "same key" in p.stderr, p.stderr
    assert not (d / "out/results.jsonl").exists() and not list((d / "out").glob("*.png")), "work was done"
    # Their directories as inputs: keys relative to each root collide too (a/x.png vs b/x.png are both
    # x.png)... but the parent gives a/x.png and b/x.png.
    segment(d, d / "out2", "--extensions", "png")
    assert sorted(r["key"] for r in results(d / "out2/results.jsonl")) == ["a/x.png", "b/x.png"]
    # One file named twice (x.png and a/../x.png): one key, taken once.
    (d / "a/sub").mkdir()
    segment([d / "a/x.png", d / "a/sub/../x.png"], d / "out3")
    recs = results(d / "out3/results.jsonl")
    assert [r["key"] for r in recs] == ["x.png"], recs


def test_symlink_loops():
    d = fresh("loops")
    img = d / "l2"
    img.mkdir()
    Image.open(base.FIX / "images/chelsea.png").resize((48, 40)).save(img / "000000.png")
    (img / "abs").symlink_to(img.resolve())  # a link to its own absolute path
    (img / "rel").symlink_to(".")  # and a relative one beside it
    t = time.time()
    p = run("embed", "--model", base.FIX / "model", "--input", img, "--output", d / "e.json", "--json")
    assert time.time() - t < 60, "the walk took too long"
    emb = json.loads((d / "e.json").read_text())
    assert emb["images"] == [str(img / "000000.png")], emb["images"]
    assert p.stderr.count("symlink loop") == 2, p.stderr  # each loop reported once


def test_output_inside_input():
    d = fresh("inside")
    src = base.many_inputs(4, "inside_src")
    work = d / "imgs"
    work.mkdir()
    for f in sorted(src.glob("*.png")):
        (work / f.name).write_bytes(f.read_bytes())
    for _ in range(2):  # the second run must not take the first run's PNG outputs as inputs
        segment(work, work / "out", "--overlay-format", "png")
        keys = sorted(r["key"] for r in results(work / "out/results.jsonl"))
        assert keys == [f"img{i:03d}.png" for i in range(4)], keys


def test_stdin():
    d = fresh("stdin")
    src = base.many_inputs(6, "stdin_src")
    listing = "".join(f"{f}\n" for f in sorted(src.glob("*.png"))[:5])
    for spec in ("-", "@-"):
        out = d / spec.replace("@", "at")
        p = subprocess.run([base.BIN, "segment", "--model", str(base.FIX / "model"), "--input", spec, "--output",
                            str(out), *SEG], input=listing, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        assert len(results(out / "results.jsonl")) == 5


def write_shard(path, samples, gz=False):
    """A WebDataset shard with Python's tarfile: members KEY.EXT in sample order."""
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                info.mtime = 0
                tar.addfile(info, io.BytesIO(data))


def shard_set(d, n_images=12, per_shard=4):
    """Images both as a directory and as shards shard-000.tar.. (the last one gzipped)."""
    src = base.many_inputs(n_images, "wds_src")
    files = sorted(src.glob("*.png"))
    shards = []
    for s in range(0, len(files), per_shard):
        name = d / f"shard-{s // per_shard:03d}.tar" if s + per_shard < len(files) else d / f"shard-{s // per_shard:03d}.tar.gz"
        write_shard(name, [(f.stem, {"png": f.read_bytes(), "txt": f"a photo {f.stem}".encode()})
                           for f in files[s:s + per_shard]], gz=name.suffix == ".gz")
        shards.append(name)
    return src, files, shards


def test_webdataset():
    d = fresh("wds")
    src, files, shards = shard_set(d)
    last = len(shards) - 1
    pattern = str(d / f"shard-{{000..{last - 1:03d}}}.tar")
    # A truncated shard: the samples before the damage, one error entry, the rest goes on.
    data = shards[0].read_bytes()
    cut = d / "cut.tar"
    cut.write_bytes(data[: len(data) * 5 // 8])
    out, ref = d / "out", d / "ref"
    p = segment([pattern, shards[last], cut], out, "--json", expect=3)
    summary = json.loads(p.stdout)
    segment(src, ref)
    recs = {r["key"]: r for r in results(out / "results.jsonl")}
    refs = {r["key"]: r for r in results(ref / "results.jsonl")}
    wds_keys = {k for k in recs if not k.startswith("cut/")}
    assert wds_keys == {f"shard-{i // 4:03d}/{f.stem}" for i, f in enumerate(files)}, sorted(recs)
    for k in wds_keys:  # the same image from a shard and from a file: the same label map
        name = k.split("/")[1] + ".png"
        assert np.array_equal(label_map(out / f"{k}.labels.png"), label_map(ref / f"{name}.labels.png")), k
        assert recs[k]["pixel_share"] == refs[name]["pixel_share"], k
    cut_keys = {k for k in recs if k.startswith("cut/")}
    assert 0 < len(cut_keys) < 4, cut_keys
    errors = results(out / "errors.jsonl")
    assert len(errors) == 1 and "truncated" in errors[0]["error"].lower(), errors
    assert summary["failed"] == 1 and summary["processed"] == len(recs), summary
    # --resume over shards skips what is done; a shard of the shards takes its part.
    p = segment([pattern, shards[last]], out, "--resume", "--json")
    assert json.loads(p.stdout)["processed"] == 0
    # A sample without an image member is an error entry, not a crash.
    write_shard(d / "noimg.tar", [("a", {"txt": b"caption only"}), ("b", {"png": files[0].read_bytes()})])
    p = segment(d / "noimg.tar", d / "noimg", expect=3)
    assert [r["key"] for r in results(d / "noimg/results.jsonl")] == ["noimg/b"]
    assert "no image member" in results(d / "noimg/errors.jsonl")[0]["error"]
    # A pattern that matches nothing names itself.
    p = segment(str(d / "none-{000..001}.tar"), d / "none", expect=1)
    assert "none-000.tar" in p.stderr, p.stderr


def npy_rows(out, pattern="embeddings"):
    """key -> embedding row from a directory of embed chunks (index files say which row is which)."""
    rows = {}
    for npy in sorted(out.glob(f"{pattern}*.npy")):
        arr = np.load(npy)
        index = [json.loads(line) for line in npy.with_name(npy.name.replace("embeddings", "index")).with_suffix(".jsonl").read_text().splitlines()]
        assert len(index) == arr.shape[0], (npy, len(index), arr.shape)
        for entry in index:
            assert entry["key"] not in rows, f"{entry['key']} twice"
            rows[entry["key"]] = arr[entry["row"]]
    return rows


def test_embed_batch():
    d = fresh("embed_batch")
    src = base.many_inputs(10, "embed_src")
    bad = d / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    texts = d / "texts.txt"
    texts.write_text("a photo of a cat\n\na photo of a dog\n")
    ref = d / "ref.json"
    run("embed", "--model", base.FIX / "model", "--input", src, "--text", f"@{texts}", "--output", ref, "--normalize",
        "--batch-size", "4")  # the batches of the run below
    refj = json.loads(ref.read_text())
    ref_rows = {Path(p).name: np.array(r, dtype=np.float32) for p, r in zip(refj["images"], refj["image_embeds"])}
    assert refj["texts"] == ["a photo of a cat", "a photo of a dog"], refj["texts"]
    # Into a directory: chunks of 3, a broken image reported (exit 3), texts beside them.
    out = d / "out"
    p = run("embed", "--model", base.FIX / "model", "--input", src, bad, "--text", f"@{texts}", "--output", out,
            "--normalize", "--chunk-size", "3", "--batch-size", "4", "--json", expect=3)
    summary = json.loads(p.stdout)
    assert summary["processed"] == 10 and summary["failed"] == 1, summary
    rows = npy_rows(out)
    assert set(rows) == set(ref_rows), sorted(rows)
    # Within 1e-6, not bit for bit: a neighbour on the cores can change the adaptive thread count,
    # and with it the kernels' reductions, between the two processes.
    for k in rows:
        assert np.allclose(rows[k], ref_rows[k], rtol=0, atol=1e-6), (k, np.abs(rows[k] - ref_rows[k]).max())
    assert len(list(out.glob("embeddings-*.npy"))) == 4  # 10 images in chunks of 3
    assert np.array_equal(np.load(out / "texts.npy"), np.array(refj["text_embeds"], dtype=np.float32))
    errors = results(out / "errors.jsonl")
    assert len(errors) == 1 and errors[0]["key"] == "broken.png", errors
    # --resume: nothing left to do, nothing rewritten.
    p = run("embed", "--model", base.FIX / "model", "--input", src, "--output", out, "--normalize", "--chunk-size",
            "3", "--resume", "--json")
    assert json.loads(p.stdout)["processed"] == 0
    assert len(list(out.glob("embeddings-*.npy"))) == 4
    # Shards into one directory: disjoint and complete.
    sh = d / "sharded"
    for i in range(3):
        run("embed", "--model", base.FIX / "model", "--input", src, "--output", sh, "--normalize", "--shard",
            f"{i}/3", "--chunk-size", "2")
    rows = npy_rows(sh)  # other batches: float rounding may differ
    assert set(rows) == set(ref_rows) and all(np.allclose(rows[k], ref_rows[k], atol=1e-6) for k in rows)
    # A single-file output keeps the good images and says which failed.
    p = run("embed", "--model", base.FIX / "model", "--input", src, bad, "--output", d / "one.npy", expect=3)
    assert "broken.png" in p.stderr and np.load(d / "one.npy").shape[0] == 10
    run("embed", "--model", base.FIX / "model", "--input", src, "--output", d / "x.json", "--resume", expect=1)


def test_similarity_batch():
    d = fresh("similarity_batch")
    src = base.many_inputs(5, "sim_src")
    (src.parent / "sim_bad").mkdir(exist_ok=True)
    bad = src.parent / "sim_bad/zz-broken.jpg"
    bad.write_bytes(b"\xff\xd8\xffnot a jpeg")
    texts = ["a photo of a cat", "a photo of a dog"]
    files = sorted(src.glob("*.png"))
    one = json.loads(run("similarity", "--model", base.FIX / "model", "--input", *files, "--text", *texts,
                         "--json").stdout)
    p = run("similarity", "--model", base.FIX / "model", "--input", src, bad, "--text", *texts, "--json",
            "--batch-size", "2", expect=3)
    got = json.loads(p.stdout)
    assert got["images"] == [str(f) for f in files], got["images"]
    assert np.allclose(got["probs"], one["probs"], atol=1e-6), (got["probs"], one["probs"])
    assert "zz-broken.jpg" in p.stderr, p.stderr
    listing = d / "list.txt"
    listing.write_text("".join(f"{f}\n" for f in files))
    got = json.loads(run("similarity", "--model", base.FIX / "model", "--input", f"@{listing}", "--text", *texts,
                         "--json").stdout)
    # Not bit for bit: a neighbour on the cores can change the adaptive thread count between the runs.
    assert got["images"] == one["images"] and np.allclose(got["probs"], one["probs"], atol=1e-6), (got, one)


def test_partitions():
    d = fresh("partitions")
    src = base.many_inputs(8, "part_src")
    out = d / "out"
    for i in range(2):
        segment(src, out, "--shard", f"{i}/2")
    # Slurm's resubmission of one task as --array=1 looks unsharded: refused, the fix named.
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="1", SLURM_ARRAY_TASK_COUNT="1", SLURM_ARRAY_TASK_MIN="1",
               SLURM_ARRAY_TASK_MAX="1", SLURM_ARRAY_TASK_STEP="1")
    p = segment(src, out, "--resume", expect=1, env=env)
    assert "--shard I/2" in p.stderr and "2 shards" in p.stderr, p.stderr
    assert not (out / "results.jsonl").exists()
    p = segment(src, out, "--shard", "0/4", expect=1)
    assert "2 shards" in p.stderr, p.stderr
    # The reverse: shards into a directory of an unsharded run.
    segment(src, d / "whole")
    p = segment(src, d / "whole", "--shard", "1/2", expect=1)
    assert "unsharded" in p.stderr, p.stderr
    # Slurm array forms: a stepped range maps to its position; a list is refused before any work.
    stepped = dict(os.environ, SLURM_ARRAY_TASK_ID="5", SLURM_ARRAY_TASK_COUNT="4", SLURM_ARRAY_TASK_MIN="1",
                   SLURM_ARRAY_TASK_MAX="7", SLURM_ARRAY_TASK_STEP="2")
    p = segment(src, d / "stepped", "--json", env=stepped)
    assert json.loads(p.stdout)["shard"] == {"index": 2, "count": 4, "source": "slurm"}
    listed = dict(stepped, SLURM_ARRAY_TASK_STEP="1")
    p = segment(src, d / "listed", expect=1, env=listed)
    assert "list-form array" in p.stderr and "--shard" in p.stderr, p.stderr
    assert not (d / "listed").exists() or not list((d / "listed").glob("results*")), "work was done"
    # Commands without per-shard outputs take every input inside an array task too.
    files = sorted(src.glob("*.png"))
    p = run("similarity", "--model", base.FIX / "model", "--input", src, "--text", "a cat", "--json", env=stepped)
    assert json.loads(p.stdout)["images"] == [str(f) for f in files]
    run("embed", "--model", base.FIX / "model", "--input", src, "--output", d / "one.json", env=listed)
    assert len(json.loads((d / "one.json").read_text())["images"]) == len(files)


def test_shard_balance():
    """27 keys imgABC.png with digits A, B, C from {0, 4, 8} in 4 shards: disjoint, complete, none empty.
    Those digits share their low two bits, so a hash whose low bits follow the bytes' low bits (FNV-1a
    unfinalised) puts all 27 in one shard."""
    import itertools
    src = fresh("balance_images")
    base_img = Image.open(base.FIX / "images/chelsea.png").resize((48, 40))
    names = [f"img{a}{b}{c}.png" for a, b, c in itertools.product("048", repeat=3)]
    for n in names:
        base_img.save(src / n)
    out = fresh("balance")
    counts, keys = [], set()
    for i in range(4):
        run("embed", "--model", base.FIX / "model", "--input", src, "--output", out, "--shard", f"{i}/4")
        shard = {r["key"] for r in results(out / f"results.shard-{i}-of-4.jsonl")}
        assert not (shard & keys), shard & keys
        keys |= shard
        counts.append(len(shard))
    assert keys == set(names) and min(counts) >= 2, counts
    print("shard sizes", counts)


def main():
    base.BIN, base.FIX, base.WORK = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    base.WORK.mkdir(parents=True, exist_ok=True)
    t = time.time()
    globals()["test_" + sys.argv[4]]()
    print(f"{sys.argv[4]}: passed in {time.time() - t:.1f}s")


if __name__ == "__main__":
    main()
