#!/usr/bin/env python3
"""End-to-end tests of `groupvit train` and `groupvit eval` (run by CTest).

    train_test.py GROUPVIT_BINARY WORK_DIR CASE

Cases:
  mini     a few dozen steps from scratch on synthetic scenes (scripts/make_scenes.py): the loss
           falls, the written directory loads in `groupvit info`/`segment` and in transformers
           (no missing or unexpected weights), fp16 saving halves the file
  resume   --stop-after + --resume, and SIGINT midway + --resume, give the same weights byte for
           byte as an uninterrupted run
  eval     `eval --predictions` on handcrafted label maps (grey and paletted PNGs, ignore 255, a
           class never present) against an independent numpy confusion matrix; `eval --model`
           equals `segment` + `eval --predictions` on the same images
  errors   bad training data and options: clear messages, non-zero exit, nothing half written
  trust    written files get the umask's modes; checksums.sha256 passes `sha256sum -c`; 64 flipped
           bytes in a tensor of checkpoint.pt are refused by --resume, in model.safetensors by
           loading; a second train into the same --output is refused at once, naming the first
"""
import json
import os
import zipfile
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

CONFIG = {
    "model_type": "groupvit", "projection_dim": 32, "projection_intermediate_dim": 64,
    "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                    "max_position_embeddings": 16},
    "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "depths": [1, 1],
                      "num_group_tokens": [8, 0], "num_output_groups": [4, 4], "num_attention_heads": 2,
                      "image_size": 32, "patch_size": 4},
}


def run(cmd, check=True, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)
    if check and r.returncode != 0:
        raise SystemExit(f"command failed ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stdout}\n{r.stderr}")
    return r


def dataset(work: Path) -> Path:
    """Scenes, a reduced tokenizer and a tiny config, made once per work dir."""
    data = work / "scenes"
    if not (data / "config.json").exists():
        run([PY, ROOT / "scripts/make_scenes.py", data, "--train", 96, "--val", 12, "--size", 32, "--seed", 3])
        run([PY, ROOT / "scripts/make_small_vocab.py", data / "tokenizer", "--text", data / "train/captions.jsonl",
             data / "val/classes_colour.txt", data / "val/classes_shape.txt"])
        vocab = json.loads((data / "tokenizer/vocab.json").read_text())
        config = json.loads(json.dumps(CONFIG))
        config["text_config"].update(vocab_size=len(vocab), bos_token_id=vocab["<|startoftext|>"],
                                     eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"])
        (data / "config.json").write_text(json.dumps(config))
    return data


def train_args(data: Path, out: Path, steps=24, extra=()):
    return ["train", "--data", data / "train/captions.jsonl", "--config", data / "config.json", "--tokenizer",
            data / "tokenizer", "--output", out, "--steps", steps, "--batch-size", 8, "--lr", 3e-3,
            "--warmup-steps", 4, "--phrases", 2, "--threads", 1, "--workers", 2, "--log-every", 4, "--hflip",
            "--seed", 7, *extra]


def check(cond, what):
    if not cond:
        raise SystemExit("FAILED: " + what)
    print("ok:", what)


def case_mini(binary, work):
    data = dataset(work)
    out = work / "mini"
    r = run([binary, *train_args(data, out, steps=48), "--json", "--quiet"])
    summary = json.loads(r.stdout)
    check(summary["finished"] and summary["steps"] == 48, "the run reports 48 finished steps")
    log = [json.loads(l) for l in (out / "train_log.jsonl").read_text().splitlines()]
    check([l["step"] for l in log] == list(range(4, 49, 4)), "train_log.jsonl has a line every 4 steps")
    first, last = log[0]["loss"], sum(l["loss"] for l in log[-3:]) / 3
    check(last < first - 0.3, f"the loss falls: first window {first:.3f}, last three windows {last:.3f}")
    for name in ("config.json", "model.safetensors", "vocab.json", "merges.txt", "preprocessor_config.json",
                 "checkpoint.pt", "train_run.json"):
        check((out / name).exists(), f"{name} written")
    check(not list(out.glob("*.tmp*")), "no temporary files left")
    info = json.loads(run([binary, "info", "--model", out, "--json"]).stdout)
    check(info["vision"]["image_size"] == [32, 32], "groupvit info reads the trained model")
    seg = work / "mini-seg"
    run([binary, "segment", "--model", out, "--input", data / "val/images", "--output", seg, "--labels",
         "red,green,blue", "--templates", data / "val/classes_colour.txt", "--whole", "--short-side", 32, "--quiet"])
    check(len(list(seg.glob("*.labels.png"))) == 12, "groupvit segment runs the trained model on 12 images")

    import torch
    from transformers import GroupViTModel
    model, info = GroupViTModel.from_pretrained(str(out), output_loading_info=True)
    problems = {k: v for k, v in info.items() if v and k != "mismatched_keys"} | (
        {"mismatched": info["mismatched_keys"]} if info.get("mismatched_keys") else {})
    check(not problems, f"transformers loads the directory with nothing missing or unexpected {problems}")
    run([binary, "embed", "--model", out, "--text", "red", "--output", work / "e.json"])
    ours = json.loads((work / "e.json").read_text())["text_embeds"][0]
    from transformers import CLIPTokenizer
    tok = CLIPTokenizer.from_pretrained(str(out))
    with torch.no_grad():
        theirs = model.eval().get_text_features(**tok(["red"], return_tensors="pt")).pooler_output[0]
    err = float(np.abs(np.array(ours) - theirs.numpy()).max() / np.abs(theirs.numpy()).max())
    check(err < 1e-5, f"text features of the trained model agree with transformers (rel.err {err:.1e})")

    # Fine-tuning: --init starts from the trained directory's weights, tokenizer and preprocessor.
    tuned = work / "mini-tuned"
    run([binary, "train", "--data", data / "train/captions.jsonl", "--init", out, "--output", tuned, "--steps", 3,
         "--batch-size", 8, "--lr", 1e-4, "--warmup-steps", 0, "--phrases", 2, "--threads", 1, "--quiet"])
    from safetensors.torch import load_file
    a, b = load_file(str(out / "model.safetensors")), load_file(str(tuned / "model.safetensors"))
    moved = max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].is_floating_point())
    check(a.keys() == b.keys() and 0 < moved < 0.05, f"--init fine-tunes the given weights (largest change {moved:.1e})")
    check((tuned / "preprocessor_config.json").read_text() == (out / "preprocessor_config.json").read_text(),
          "--init keeps the model's preprocessing")

    half = work / "mini-fp16"
    run([binary, *train_args(data, half, steps=2), "--save-dtype", "fp16", "--quiet"])
    ratio = (half / "model.safetensors").stat().st_size / (out / "model.safetensors").stat().st_size
    check(0.45 < ratio < 0.55, f"--save-dtype fp16 halves the weights file ({ratio:.2f})")


def case_resume(binary, work):
    data = dataset(work)
    straight, split, killed = work / "straight", work / "split", work / "killed"
    for d in (straight, split, killed):  # a rerun in the same build tree: the SIGINT wait reads the log
        shutil.rmtree(d, ignore_errors=True)
    run([binary, *train_args(data, straight), "--quiet"])
    run([binary, *train_args(data, split), "--stop-after", 9, "--quiet"])
    log = [json.loads(l) for l in (split / "train_log.jsonl").read_text().splitlines()]
    check(log[-1]["step"] == 9, "--stop-after 9 stops after step 9")
    run([binary, *train_args(data, split), "--resume", "--quiet"])
    same = (straight / "model.safetensors").read_bytes() == (split / "model.safetensors").read_bytes()
    check(same, "--stop-after then --resume: weights identical to an uninterrupted run")

    # SIGINT in the middle of a longer run: the step finishes, a checkpoint is written, exit 130.
    proc = subprocess.Popen([str(binary)] + [str(c) for c in train_args(data, killed)] + ["--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log_file = killed / "train_log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (log_file.exists() and log_file.read_text().count("\n") >= 1):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    check(proc.returncode == 130, f"SIGINT: exit code 130 (got {proc.returncode})")
    check("continue with --resume" in err, "SIGINT: says how to continue")
    ckpt_step = max(json.loads(l)["step"] for l in log_file.read_text().splitlines())
    check(ckpt_step < 24, f"SIGINT stopped the run early (after step {ckpt_step})")
    run([binary, *train_args(data, killed), "--resume", "--quiet"])
    same = (straight / "model.safetensors").read_bytes() == (killed / "model.safetensors").read_bytes()
    check(same, "SIGINT then --resume: weights identical to an uninterrupted run")
    args = train_args(data, killed)
    args[args.index("--lr") + 1] = 1e-3
    r = run([binary, *args, "--resume", "--quiet"], check=False)
    check(r.returncode != 0 and "other options" in r.stderr, "--resume with another --lr is refused")


def case_webdataset(binary, work):
    """train --data over WebDataset shards (KEY.png + KEY.txt caption + KEY.json phrases, as the NVlabs
    configs list them) trains exactly what the same samples from captions.jsonl train."""
    import io
    import tarfile
    data = dataset(work)
    lines = [json.loads(l) for l in (data / "train/captions.jsonl").read_text().splitlines() if l.strip()]
    shards = work / "shards"
    shards.mkdir(exist_ok=True)
    per = (len(lines) + 2) // 3
    for s in range(3):
        with tarfile.open(shards / f"train-{s:03d}.tar", "w") as tar:
            for i, rec in enumerate(lines[s * per:(s + 1) * per]):
                key = f"{s * per + i:06d}"
                members = {"png": (data / "train" / rec["image"]).read_bytes(), "txt": rec["caption"].encode()}
                if "phrases" in rec:
                    members["json"] = json.dumps({"phrases": rec["phrases"]}).encode()
                for ext, payload in members.items():
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size, info.mtime = len(payload), 0
                    tar.addfile(info, io.BytesIO(payload))
    from_jsonl, from_shards = work / "jsonl", work / "wds"
    for d in (from_jsonl, from_shards):
        shutil.rmtree(d, ignore_errors=True)
    run([binary, *train_args(data, from_jsonl, steps=6), "--quiet"])
    args = train_args(data, from_shards, steps=6)
    args[args.index("--data") + 1] = str(shards / "train-{000..002}.tar")
    run([binary, *args, "--quiet"])
    same = (from_jsonl / "model.safetensors").read_bytes() == (from_shards / "model.safetensors").read_bytes()
    check(same, "6 steps on shards: weights identical to the same samples from captions.jsonl")
    (shards / "garbage.tar").write_bytes(b"not a tar archive" * 100)
    args[args.index("--data") + 1] = str(shards / "garbage.tar")
    r = run([binary, *args, "--quiet"], check=False)
    check(r.returncode == 1 and "no training samples" in r.stderr and "garbage.tar" in r.stderr,
          f"a damaged shard is named and nothing trains from it ({r.stderr.strip()})")


def write_labels(path: Path, labels: np.ndarray, paletted: bool):
    img = Image.fromarray(labels.astype(np.uint8), mode="L")
    if paletted:
        img = img.convert("P")
        img.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 13) % 256)])
        img = Image.fromarray(labels.astype(np.uint8), mode="P")
        img.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 13) % 256)])
    img.save(path)


def reference_scores(pairs, n):
    """mmseg's metrics from a confusion matrix: IoU per class (NaN where the union is empty), nanmean."""
    conf = np.zeros((n, n), dtype=np.int64)
    for truth, pred in pairs:
        keep = truth != 255
        np.add.at(conf, (truth[keep].astype(int), pred[keep].astype(int)), 1)
    tp = np.diag(conf).astype(float)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / union
    fg = conf[1:].sum()
    return {"iou": iou, "miou": float(np.nanmean(iou)), "acc": float(tp.sum() / conf.sum()),
            "fg": float(tp[1:].sum() / fg)}


def case_eval(binary, work):
    rng = np.random.default_rng(0)
    root = work / "handmade"
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "pred").mkdir(parents=True, exist_ok=True)
    classes = ["background", "cat", "dog", "bird", "never"]  # "never" is in no label map and never predicted
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    pairs = []
    for i, (h, w) in enumerate([(20, 30), (17, 9), (40, 40), (1, 5)]):
        truth = rng.integers(0, 4, (h, w))
        truth[: h // 3, : w // 4] = 255  # ignored
        pred = np.where(rng.random((h, w)) < 0.6, np.where(truth == 255, 0, truth), rng.integers(0, 4, (h, w)))
        write_labels(root / "labels" / f"im{i}.png", truth, paletted=i % 2 == 1)
        write_labels(root / "pred" / f"im{i}.png", pred, paletted=i % 2 == 0)
        pairs.append((truth, pred))
    ref = reference_scores(pairs, len(classes))
    r = run([binary, "eval", "--ground-truth", root / "labels", "--labels-file", root / "classes.txt",
             "--predictions", root / "pred", "--json"])
    got = json.loads(r.stdout)
    ious = [c["iou"] for c in got["classes"]]
    check(ious[-1] is None and np.isnan(ref["iou"][-1]), "a class absent everywhere has no IoU")
    check(np.allclose([x for x in ious[:-1]], ref["iou"][:-1], rtol=0, atol=1e-12), f"IoU per class {ious}")
    check(abs(got["mean_iou"] - ref["miou"]) < 1e-12, f"mIoU {got['mean_iou']:.6f} = numpy {ref['miou']:.6f}")
    check(abs(got["pixel_accuracy"] - ref["acc"]) < 1e-12, "pixel accuracy")
    check(abs(got["foreground_accuracy"] - ref["fg"]) < 1e-12, "foreground accuracy")

    # Perfect predictions score 1; the model path equals segment + --predictions.
    r = run([binary, "eval", "--ground-truth", root / "labels", "--labels-file", root / "classes.txt",
             "--predictions", root / "labels", "--json"])
    check(json.loads(r.stdout)["mean_iou"] == 1.0, "the ground truth scored against itself: mIoU 1")

    data = dataset(work)
    model = work / "eval-model"
    run([binary, *train_args(data, model, steps=8), "--quiet"])
    opts = ["--templates", data / "val/classes_colour.txt", "--whole", "--short-side", 32, "--bg-thresh", 0.5]
    seg = work / "eval-seg"
    names = ",".join((data / "val/classes_colour.txt").read_text().split()[1:])
    run([binary, "segment", "--model", model, "--input", data / "val/images", "--output", seg, "--labels", names,
         *opts, "--quiet", "--no-overlay"])
    direct = json.loads(run([binary, "eval", "--model", model, "--input", data / "val/images", "--ground-truth",
                             data / "val/labels_colour", "--labels-file", data / "val/classes_colour.txt", *opts,
                             "--json", "--quiet"]).stdout)
    saved = json.loads(run([binary, "eval", "--ground-truth", data / "val/labels_colour", "--labels-file",
                            data / "val/classes_colour.txt", "--predictions", seg, "--json", "--quiet"]).stdout)
    check(direct["images"] == 12 and direct["mean_iou"] == saved["mean_iou"]
          and direct["pixel_accuracy"] == saved["pixel_accuracy"],
          f"eval --model ({direct['mean_iou']:.4f}) equals segment + eval --predictions ({saved['mean_iou']:.4f})")


def case_errors(binary, work):
    data = dataset(work)
    bad = work / "bad"
    bad.mkdir(exist_ok=True)
    (bad / "lines.jsonl").write_text('{"image": "x.png", "caption": "a red circle"}\n')
    r = run([binary, *train_args(data, bad / "out")[:1], "--data", bad / "lines.jsonl",
             *train_args(data, bad / "out")[3:]], check=False)
    check(r.returncode != 0 and "lines.jsonl:1" in r.stderr and "does not exist" in r.stderr,
          "a missing training image is named with its line: " + r.stderr.strip())
    (bad / "broken.jsonl").write_text('{"image": "x.png", "caption": \n')
    r = run([binary, "train", "--data", bad / "broken.jsonl", "--config", data / "config.json", "--tokenizer",
             data / "tokenizer", "--output", bad / "out"], check=False)
    check(r.returncode != 0 and "broken.jsonl:1" in r.stderr, "malformed JSON is named with its line")
    args = train_args(data, bad / "out")
    args[args.index("--batch-size") + 1] = 1
    r = run([binary, *args], check=False)
    check(r.returncode != 0 and "--batch-size" in r.stderr, "batch size 1 is refused")
    r = run([binary, *train_args(data, bad / "out2"), "--resume"], check=False)
    check(r.returncode != 0 and "no " in r.stderr and "checkpoint.pt" in r.stderr, "--resume without a checkpoint")
    r = run([binary, "eval", "--ground-truth", bad, "--labels-file", bad / "none.txt", "--predictions", bad], check=False)
    check(r.returncode != 0 and "none.txt" in r.stderr, "eval: a missing class list is named")
    (bad / "dup.txt").write_text("background\nred\ngreen\nred\n")
    r = run([binary, "eval", "--ground-truth", bad, "--labels-file", bad / "dup.txt", "--predictions", bad], check=False)
    check(r.returncode == 1 and '"red" is given twice (entries 2 and 4)' in r.stderr,
          "eval: a class named twice is refused (it would lower mIoU unseen): " + r.stderr.strip())
    args = train_args(data, bad / "big", steps=1)
    args[args.index("--batch-size") + 1] = 200  # the scenes have 96 training samples
    r = run([binary, *args, "--quiet"], check=False)
    check("larger than the 96 training samples" in r.stderr, "train warns of a batch larger than the data")


def flip_bytes(path: Path, offset: int, count: int = 64):
    data = bytearray(path.read_bytes())
    for i in range(offset, offset + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def largest_member_data_offset(archive: Path) -> int:
    """Where the bytes of the largest record (a tensor's storage) start inside a torch archive."""
    with zipfile.ZipFile(archive) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    with open(archive, "rb") as f:  # local header: 30 bytes, then name and extra field
        f.seek(info.header_offset)
        header = f.read(30)
    return info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")


def case_trust(binary, work):
    data = dataset(work)
    for mask, mode in ((0o022, 0o644), (0o077, 0o600)):
        out = work / f"umask{mask:03o}"
        shutil.rmtree(out, ignore_errors=True)
        run([binary, *train_args(data, out, steps=4), "--quiet"], preexec_fn=lambda m=mask: os.umask(m))
        modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
        check(all(m == mode for m in modes.values()), f"umask {mask:03o}: every written file is {mode:o}: {modes}")
    out = work / "umask022"
    r = run(["sha256sum", "-c", "checksums.sha256"], cwd=out, check=False)
    check(r.returncode == 0, "sha256sum -c passes on the written directory: " + r.stdout.strip())
    listed = sorted(line.split("  ", 1)[1] for line in (out / "checksums.sha256").read_text().splitlines())
    check({"checkpoint.pt", "config.json", "model.safetensors", "preprocessor_config.json", "vocab.json",
           "merges.txt"} <= set(listed), f"checksums.sha256 lists the model files and the checkpoint: {listed}")

    flipped = work / "flipped"
    shutil.rmtree(flipped, ignore_errors=True)
    shutil.copytree(out, flipped)
    flip_bytes(flipped / "checkpoint.pt", largest_member_data_offset(flipped / "checkpoint.pt") + 128)
    r = run([binary, *train_args(data, flipped, steps=8), "--resume", "--quiet"], check=False)
    check(r.returncode == 1 and "checkpoint.pt" in r.stderr and "do not match" in r.stderr,
          "--resume refuses a checkpoint with 64 flipped bytes: " + r.stderr.strip())
    flip_bytes(flipped / "model.safetensors", (flipped / "model.safetensors").stat().st_size - 200)
    r = run([binary, "embed", "--model", flipped, "--text", "red", "--output", work / "embed.json"], check=False)
    check(r.returncode == 1 and "model.safetensors" in r.stderr and "do not match" in r.stderr,
          "loading refuses model.safetensors with 64 flipped bytes: " + r.stderr.strip())
    r = run([binary, "info", "--model", flipped], check=False)
    check(r.returncode == 1 and "model.safetensors" in r.stderr and "do not match" in r.stderr,
          "info refuses it too: " + r.stderr.strip())

    # Two trains into one directory: the second is refused at once; the first finishes intact.
    both = work / "both"
    shutil.rmtree(both, ignore_errors=True)
    first = subprocess.Popen([str(binary)] + [str(c) for c in train_args(data, both, steps=400)] + ["--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (both / "train_log.jsonl").exists():
        time.sleep(0.05)
    first.send_signal(signal.SIGSTOP)  # stopped, it still holds the lock: no race with it finishing
    t = time.time()
    r = run([binary, *train_args(data, both, steps=8), "--quiet"], check=False)
    check(r.returncode == 1 and "being written by another process" in r.stderr and f"pid={first.pid}" in r.stderr
          and time.time() - t < 60, "a second train into the same --output is refused naming the first: "
          + r.stderr.strip())
    first.send_signal(signal.SIGINT)  # ends the first early, with a checkpoint, once it runs again
    first.send_signal(signal.SIGCONT)
    first.communicate(timeout=300)
    check(first.returncode == 130, f"the first train ends normally after SIGINT (exit {first.returncode})")
    r = run(["sha256sum", "-c", "checksums.sha256"], cwd=both, check=False)
    check(r.returncode == 0, "the first run's directory is intact (sha256sum -c): " + r.stdout.strip())


def main():
    binary, work, case = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    work.mkdir(parents=True, exist_ok=True)
    {"mini": case_mini, "resume": case_resume, "eval": case_eval, "errors": case_errors,
     "trust": case_trust, "webdataset": case_webdataset}[case](binary, work / case)


if __name__ == "__main__":
    main()
