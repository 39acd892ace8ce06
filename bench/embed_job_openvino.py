#!/usr/bin/env python3
"""The embed job as a user would write it with OpenVINO, for the peer benchmark's whole-job row
(bench/peers.py): read the exported image model (bench_peers.py's image.xml), decode every photo
with Pillow, preprocess in Pillow and numpy as CLIPImageProcessor does (shortest edge resized with the
config's resampling, centre crop, rescale, normalise; the parameters from preprocessor_config.json),
run batches through the compiled model in OpenVINO's own default precision, write the features to
one .npy. The counterpart of `groupvit embed -i DIR -o FILE.npy`. No transformers and no torch in
the process, as a lean OpenVINO deployment has it: importing transformers' image processor alone
took the process from about 0.45 to 1.3 GB (bench/peers.py compares the features with ours).

    bench/embed_job_openvino.py --ir CACHE/image.xml --preprocessor HF_DIR --input DIR
                                --output FILE.npy [--threads N] [--batch-size 32]
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np


def preprocess(image, cfg, mean, std):
    """CLIPImageProcessor's steps on one RGB Pillow image: [3, H, W] float32."""
    w, h = image.size
    short = cfg["size"]["shortest_edge"]
    size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    image = image.resize(size, resample=cfg.get("resample", 3))
    ch, cw = cfg["crop_size"]["height"], cfg["crop_size"]["width"]
    top, left = (size[1] - ch) // 2, (size[0] - cw) // 2
    a = np.asarray(image.crop((left, top, left + cw, top + ch)), dtype=np.float32) * cfg["rescale_factor"]
    return ((a - mean) / std).transpose(2, 0, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ir", required=True, type=Path, help="the OpenVINO IR of get_image_features")
    ap.add_argument("--preprocessor", required=True, help="the Hugging Face model directory (preprocessor_config.json)")
    ap.add_argument("--input", required=True, type=Path, help="a directory of photos")
    ap.add_argument("--output", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=32)
    a = ap.parse_args()

    import openvino as ov
    from PIL import Image

    config = {"PERFORMANCE_HINT": "LATENCY"}
    if a.threads:
        config["INFERENCE_NUM_THREADS"] = a.threads
    compiled = ov.Core().compile_model(str(a.ir), "CPU", config)  # its default precision: bf16 where AMX has it
    request = compiled.create_infer_request()
    cfg = json.loads((Path(a.preprocessor) / "preprocessor_config.json").read_text())
    mean, std = np.array(cfg["image_mean"], np.float32), np.array(cfg["image_std"], np.float32)
    paths = sorted(p for p in a.input.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise SystemExit(f"embed_job_openvino: no photos in {a.input}")
    features = []
    for start in range(0, len(paths), a.batch_size):
        images = [Image.open(p).convert("RGB") for p in paths[start:start + a.batch_size]]
        pixels = np.stack([preprocess(im, cfg, mean, std) for im in images])
        features.append(np.array(request.infer([pixels])[0], dtype=np.float32))
    np.save(a.output, np.concatenate(features))
    return 0


if __name__ == "__main__":
    sys.exit(main())
