#!/usr/bin/env python3
"""segment --format coco / labelstudio / cvat, read back by each tool's own reader: pycocotools
(COCO RLE), Label Studio's SDK (brush RLE decoder and its labeling-config / prediction validators),
Datumaro (CVAT's dataset library, "Segmentation mask 1.1" = its voc_segmentation format). Each
decoded mask must equal segment's own label PNG. Runs in .venv-tools (scripts/setup.sh); on the
fixtures of scripts/make_cli_fixtures.py.

    label_formats_test.py BINARY FIXTURES_DIR WORK_DIR CASE
"""
import json
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

BIN, FIX, WORK = None, None, None
LABELS = "cat,astronaut,cup of coffee,grass,rocket"
# Every pixel a class (the tiny seeded model's scores stay below the paper's background threshold);
# test_all_formats also runs with a background.
FAST = ["--short-side", "64", "--crop-size", "64", "--stride", "64", "--quiet"]


def run(*args, expect=0):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=300)
    if expect is not None and p.returncode != expect:
        raise AssertionError(f"exit {p.returncode} (expected {expect}) for {args}\n{p.stdout}\n{p.stderr}")
    return p


def fresh(name):
    d = WORK / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def segment(out, *extra, inputs=None, labels=LABELS, expect=0, background=False):
    return run("segment", "--model", FIX / "model", "--input", *(inputs or [FIX / "images"]), "--output", out,
               "--labels", labels, *FAST, *([] if background else ["--no-background"]), *extra, expect=expect)


def results(out, name="results.jsonl"):
    return [json.loads(line) for line in (out / name).read_text().splitlines()]


def label_png(out, key):
    return np.array(Image.open(out / f"{key}.labels.png"))


def check_coco(out, recs, coco_file="coco.json", names=None):
    from pycocotools import mask as mask_util
    from pycocotools.coco import COCO

    coco = COCO(str(out / coco_file))
    names = names or recs[0]["labels"]
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == names[1:]
    by_name = {img["file_name"]: img for img in coco.loadImgs(coco.getImgIds())}
    assert sorted(by_name) == sorted(r["key"] for r in recs), (sorted(by_name), [r["key"] for r in recs])
    for rec in recs:
        img = by_name[rec["key"]]
        ours = label_png(out, rec["key"])
        assert (img["height"], img["width"]) == ours.shape
        decoded = np.zeros_like(ours)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        assert sorted(a["category_id"] for a in anns) == sorted(int(v) for v in np.unique(ours) if v), rec["key"]
        for a in anns:
            m = coco.annToMask(a)
            assert not (decoded[m > 0]).any(), "two annotations cover one pixel"
            decoded[m > 0] = a["category_id"]
            # Our encoder's string is pycocotools' own for the same mask, area and bbox too.
            ref = mask_util.encode(np.asfortranarray((ours == a["category_id"]).astype(np.uint8)))
            assert a["segmentation"]["counts"] == ref["counts"].decode(), (rec["key"], a["category_id"])
            assert a["area"] == int(mask_util.area(ref)) and a["bbox"] == mask_util.toBbox(ref).tolist()
            assert 0.0 <= a["score"] <= 1.0 and a["iscrowd"] == 0
        assert np.array_equal(decoded, ours), rec["key"]
    # The annotation list is also a results list for COCO evaluation.
    if coco.getAnnIds():
        coco.loadRes(coco.loadAnns(coco.getAnnIds()))


def check_label_studio(out, recs, tasks_file="labelstudio.json"):
    from label_studio_sdk.converter.brush import decode_rle, mask2rle
    from label_studio_sdk.label_interface import LabelInterface

    config = (out / "labelstudio-config.xml").read_text()
    interface = LabelInterface(config)
    interface.validate()
    names = recs[0]["labels"]
    assert [e.get("value") for e in ET.fromstring(config).iter("Label")] == names[1:]
    tasks = json.loads((out / tasks_file).read_text())
    by_key = {r["key"]: r for r in recs}
    assert len(tasks) == len(recs)
    for task in tasks:
        key = task["data"]["image"].removeprefix("/data/local-files/?d=")
        ours = label_png(out, key)
        (prediction,) = task["predictions"]
        errors = interface.validate_prediction(prediction, return_errors=True)
        assert not errors, errors
        decoded = np.zeros_like(ours)
        for r in prediction["result"]:
            h, w = r["original_height"], r["original_width"]
            (name,) = r["value"]["brushlabels"]
            value = names.index(name)
            m = np.reshape(decode_rle(r["value"]["rle"]), [h, w, 4])[:, :, 3]
            assert set(np.unique(m)) <= {0, 255}
            decoded[m == 255] = value
            assert r["value"]["rle"] == mask2rle(((ours == value) * 255).astype(np.uint8)), (key, name)
        assert np.array_equal(decoded, ours), key
        regions = {g["label"]: g["score"] for g in by_key[key]["regions"]}
        assert {r["value"]["brushlabels"][0]: r["score"] for r in prediction["result"]} == regions


def check_cvat(out, recs, subset="default", names=None):
    import datumaro as dm

    cvat = out / "cvat"
    names = names or recs[0]["labels"]
    lines = (cvat / "labelmap.txt").read_text().splitlines()
    assert lines[0].startswith("#") and [line.split(":")[0] for line in lines[1:]] == names
    listed = (cvat / "ImageSets/Segmentation" / f"{subset}.txt").read_text().split()
    assert sorted(listed) == sorted(Path(r["key"]).with_suffix("").as_posix() for r in recs)
    ds = dm.Dataset.import_from(str(cvat), "voc_segmentation")
    cats = ds.categories()[dm.AnnotationType.label]
    assert [c.name for c in cats] == names
    items = {item.id: item for item in ds if item.subset == subset}
    assert sorted(items) == sorted(listed)
    for rec in recs:
        ours = label_png(out, rec["key"])
        item = items[Path(rec["key"]).with_suffix("").as_posix()]
        decoded = np.zeros_like(ours)
        for ann in item.annotations:
            if ann.type == dm.AnnotationType.mask:
                decoded[ann.image.astype(bool)] = ann.label
        assert np.array_equal(decoded, ours), rec["key"]


def test_all_formats():
    d = fresh("all")
    segment(d / "out", "--format", "png,coco,labelstudio,cvat", "--json")
    recs = results(d / "out")
    assert len(recs) == 5 and sum(len(r["regions"]) for r in recs) >= 6, [r["regions"] for r in recs]
    check_coco(d / "out", recs)
    check_label_studio(d / "out", recs)
    check_cvat(d / "out", recs)
    # With the background label: its pixels are in no annotation.
    segment(d / "bg", "--bg-thresh", "0.3", "--format", "png,coco,labelstudio,cvat", background=True)
    recs = results(d / "bg")
    assert any(0 < r["pixel_share"].get("background", 0) < 1 for r in recs), [r["pixel_share"] for r in recs]
    check_coco(d / "bg", recs)
    check_label_studio(d / "bg", recs)
    check_cvat(d / "bg", recs)
    # The hf mode's label maps and scores through the same readers.
    segment(d / "hf", "--mode", "hf", "--format", "png", "--format", "coco,labelstudio")
    check_coco(d / "hf", results(d / "hf"))
    check_label_studio(d / "hf", results(d / "hf"))


def test_scores():
    # A region's score (README): the mean over its pixels of its label's score there; nvlabs: the
    # head's scores, which --save-logits writes at the original size.
    d = fresh("scores")
    for background in (False, True):
        out = d / f"bg{int(background)}"
        segment(out, "--save-logits", "--bg-thresh", "0.3", "--format", "png,coco", background=background)
        checked = 0
        for rec in results(out):
            scores = np.load(out / f"{rec['key']}.logits.npy")
            ours = label_png(out, rec["key"])
            for r in rec["regions"]:
                channel = r["id"] if background else r["id"] - 1  # without background, channel 0 is label 1
                want = scores[channel][ours == r["id"]].mean()
                assert abs(r["score"] - want) < 1e-5, (rec["key"], r["label"], r["score"], want)
                assert r["area"] == int((ours == r["id"]).sum())
                checked += 1
        assert checked >= 3, checked


def many_images(d, n):
    src = d / "images"
    src.mkdir()
    base = Image.open(FIX / "images/chelsea.png").convert("RGB")
    for i in range(n):
        base.resize((40 + 7 * i, 36 + 5 * i)).rotate(30 * i).save(src / f"img{i:02d}.png")
    return sorted(src.iterdir())


def test_resume_and_shards():
    d = fresh("resume")
    images = many_images(d, 8)
    segment(d / "out", "--format", "png,coco,labelstudio,cvat", inputs=images[:2])
    segment(d / "out", "--format", "png,coco,labelstudio,cvat", "--resume", inputs=images)
    recs = results(d / "out")
    assert len(recs) == 8
    check_coco(d / "out", recs)
    check_label_studio(d / "out", recs)
    check_cvat(d / "out", recs)
    # Two shards: one file each, together every image once.
    for i in range(2):
        segment(d / "sh", "--format", "png,coco,cvat", "--shard", f"{i}/2", inputs=images)
    seen = []
    for i in range(2):
        part = results(d / "sh", f"results.shard-{i}-of-2.jsonl")
        names = ["background", *LABELS.split(",")]
        check_coco(d / "sh", part, f"coco.shard-{i}-of-2.json", names)
        check_cvat(d / "sh", part, f"default.shard-{i}-of-2", names)
        seen += [r["key"] for r in part]
    assert sorted(seen) == sorted(p.name for p in images)
    # A results line without the format's data (a run without --format coco, resumed with it): left
    # out of coco.json and said so.
    segment(d / "mixed", inputs=images[:2])
    p = segment(d / "mixed", "--format", "png,coco", "--resume", inputs=images)
    assert "2 line(s)" in p.stderr and "without --format coco" in p.stderr, p.stderr
    assert len(json.loads((d / "mixed/coco.json").read_text())["images"]) == 6


def test_format_errors():
    d = fresh("errors")
    p = segment(d / "a", "--format", "yolo", expect=None)
    assert p.returncode != 0 and "yolo" in p.stderr, p.stderr
    p = segment(d / "b", "--format", "cvat", labels="cat,dog:brown", expect=1)
    assert "dog:brown" in p.stderr and "labelmap.txt" in p.stderr, p.stderr
    # Two inputs whose CVAT mask names agree (x.png, x.jpg): the second is an error, not an overwrite.
    src = d / "src"
    src.mkdir()
    img = Image.open(FIX / "images/chelsea.png").convert("RGB").resize((64, 48))
    img.save(src / "x.png")
    img.save(src / "x.jpg")
    p = segment(d / "c", "--format", "cvat", inputs=[src], expect=3)
    errs = [json.loads(line) for line in (d / "c/errors.jsonl").read_text().splitlines()]
    assert len(errs) == 1 and "mask name 'x'" in errs[0]["error"], errs
    # Labels in any script, and the characters XML and JSON must escape.
    names = 'café,猫,"quoted" & <tagged>'
    segment(d / "u", "--format", "png,coco,labelstudio", labels=names)
    recs = results(d / "u")
    assert recs[0]["labels"][1:] == ["café", "猫", '"quoted" & <tagged>']
    check_coco(d / "u", recs)
    check_label_studio(d / "u", recs)


def main():
    global BIN, FIX, WORK
    BIN, FIX, WORK = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    WORK.mkdir(parents=True, exist_ok=True)
    t = time.time()
    globals()["test_" + sys.argv[4]]()
    print(f"{sys.argv[4]}: passed in {time.time() - t:.1f}s")


if __name__ == "__main__":
    main()
