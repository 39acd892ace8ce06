#!/usr/bin/env python3
"""The embed job as a user would write it with OpenVINO, for the peer benchmark's whole-job row
(bench/peers.py): read the exported image model (bench_peers.py's image.xml), decode every photo
with Pillow, preprocess with transformers' CLIPImageProcessorPil (the reference preprocessing, numpy
out: no torch in this process), run batches through the compiled model in OpenVINO's own default
precision, write the features to one .npy. The counterpart of `groupvit embed -i DIR -o FILE.npy`.

    bench/embed_job_openvino.py --ir CACHE/image.xml --preprocessor HF_DIR --input DIR
                                --output FILE.npy [--threads N] [--batch-size 32]
"""
import argparse
import sys
from pathlib import Path

import numpy as np


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
    from transformers import CLIPImageProcessorPil

    config = {"PERFORMANCE_HINT": "LATENCY"}
    if a.threads:
        config["INFERENCE_NUM_THREADS"] = a.threads
    compiled = ov.Core().compile_model(str(a.ir), "CPU", config)  # its default precision: bf16 where AMX has it
    request = compiled.create_infer_request()
    processor = CLIPImageProcessorPil.from_pretrained(a.preprocessor)
    paths = sorted(p for p in a.input.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise SystemExit(f"embed_job_openvino: no photos in {a.input}")
    features = []
    for start in range(0, len(paths), a.batch_size):
        images = [Image.open(p).convert("RGB") for p in paths[start:start + a.batch_size]]
        pixels = processor(images=images, return_tensors="np")["pixel_values"].astype(np.float32)
        features.append(np.array(request.infer([pixels])[0], dtype=np.float32))
    np.save(a.output, np.concatenate(features))
    return 0


if __name__ == "__main__":
    sys.exit(main())
