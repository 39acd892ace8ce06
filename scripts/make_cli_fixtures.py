#!/usr/bin/env python3
"""Fixtures for the end-to-end CLI tests (test/cli_test.py).

    scripts/make_cli_fixtures.py OUT_DIR

Writes, deterministically and without network:
  OUT_DIR/hf/        a small seeded GroupViT with the full CLIP vocabulary (49408 tokens, eos 49407),
                     224x224 input in 16px patches, saved with save_pretrained plus the tokenizer and
                     CLIPImageProcessor files, as a hub snapshot is laid out
  OUT_DIR/model/     the same converted by scripts/convert_hf.py
  OUT_DIR/images/    real photos (scikit-image) and crops of odd sizes and aspect ratios
  OUT_DIR/broken/    good images plus one truncated JPEG
  OUT_DIR/refs/      what the Python references make of them:
      embed.pt       get_image_features (through CLIPImageProcessorPil) and get_text_features
      hf_NAME.npy    transformers' segmentation_logits [labels, 224, 224] for pixel_values from
                     CLIPImageProcessorPil resizing the whole image to 224x224 (no crop)
      nv_CASE.npy    an independent PyTorch re-implementation of NVlabs' GroupViTSegInference with
                     mmseg's slide/whole inference, [labels + 1, H, W] at the original size
      manifest.json  labels, cases and their options, assignment margins
Does nothing when OUT_DIR/manifest.json exists.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_image_fixtures import nvlabs_normaliser, nvlabs_resize  # noqa: E402
from make_parity_fixtures import randomise, vision_forward  # noqa: E402
from make_tokenizer_fixtures import write_hf_folder  # noqa: E402

LABELS = ["cat", "astronaut", "cup of coffee", "grass", "rocket"]
EMBED_TEXTS = ["a photo of a cat", "an astronaut in a white suit", "coffee"]
# NVlabs cases: image, options as the CLI takes them. Defaults (448 / 448 / 224) and a reduced
# window setup that also exercises padding to the patch size and windows smaller than the crop.
NV_CASES = {
    "chelsea_default": ("chelsea.png", dict(short=448, long=2048, crop=448, stride=224, whole=False, resize="mmcv")),
    "odd_small": ("odd_97x131.png", dict(short=100, long=400, crop=64, stride=32, whole=False, resize="mmcv")),
    "wide_whole": ("wide_333x45.png", dict(short=60, long=400, crop=448, stride=224, whole=True, resize="mmcv")),
    "odd_pillow": ("odd_97x131.png", dict(short=100, long=400, crop=64, stride=32, whole=False, resize="pillow")),
}


def model_config():
    from transformers import GroupViTConfig

    return GroupViTConfig(
        text_config=dict(vocab_size=49408, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=49406,
                         eos_token_id=49407, pad_token_id=49407),
        vision_config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=4, depths=[2, 1, 1],
                           num_group_tokens=[16, 4, 0], num_output_groups=[16, 4, 4], num_attention_heads=3,
                           image_size=224, patch_size=16),
        projection_dim=32, projection_intermediate_dim=64,
    )


def write_images(out):
    import skimage.data

    (out / "images").mkdir()
    (out / "broken").mkdir()
    photos = {n: Image.fromarray(getattr(skimage.data, n)()).convert("RGB") for n in ("chelsea", "astronaut", "coffee")}
    photos["chelsea"].save(out / "images" / "chelsea.png")
    photos["astronaut"].save(out / "images" / "astronaut.jpg", quality=92)
    photos["coffee"].crop((13, 7, 13 + 131, 7 + 97)).save(out / "images" / "odd_97x131.png")
    photos["astronaut"].crop((5, 200, 5 + 333, 245)).save(out / "images" / "wide_333x45.png")
    photos["coffee"].crop((100, 0, 141, 301)).save(out / "images" / "tall_41x301.png")
    for i, name in enumerate(["chelsea", "coffee", "astronaut"]):
        photos[name].resize((64 + 16 * i, 48 + 8 * i)).save(out / "broken" / f"good{i}.png")
    data = (out / "images" / "astronaut.jpg").read_bytes()
    (out / "broken" / "bad.jpg").write_bytes(data[: len(data) // 3])


def features(out):
    """get_*_features return a tensor, or in transformers 5 an output whose pooler_output is the features."""
    return out.pooler_output if hasattr(out, "pooler_output") else out


def l2(x):
    return x / x.norm(dim=-1, keepdim=True)


def nvlabs_window(model, pixels, text, bg_thresh=0.95, top_k=5):
    """NVlabs' encode_decode for one window [1, 3, h, w] (sides multiples of the patch)."""
    patch = model.config.vision_config.patch_size
    h, w = pixels.shape[-2:]
    out = vision_forward(model, pixels, interpolate=True)
    soft = None
    for attn in out.attentions:  # [1, G, N] soft assignment, chained as [N, G]
        a = attn[0].transpose(0, 1)
        soft = a if soft is None else soft @ a
    grid = soft.transpose(0, 1).reshape(1, -1, h // patch, w // patch)
    attn_map = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)[0]  # [G, h, w]
    onehot = F.one_hot(attn_map.argmax(0), num_classes=attn_map.shape[0]).float()  # [h, w, G]
    groups = l2(model.visual_projection(out.last_hidden_state[0]))
    avg = l2(model.visual_projection(out.pooler_output))
    scale = torch.clamp(model.logit_scale.exp(), max=100)
    aff = groups @ text.T * scale
    pre = aff.softmax(-1)
    avg_aff = (avg @ text.T * scale).softmax(-1)
    mask = torch.zeros_like(avg_aff)
    mask.scatter_(-1, avg_aff.topk(min(top_k, text.shape[0]), dim=-1).indices, 1.0)
    aff = aff.masked_fill(~mask.bool(), float("-inf")).softmax(-1) * pre
    fg = (onehot @ aff).permute(2, 0, 1)  # [N, h, w]
    thresh = min(bg_thresh, aff.max().item())
    bg = (fg.max(0).values < thresh).float()[None]
    return torch.cat([bg, fg])


def nvlabs_segment(model, pixels, text, orig_hw, crop, stride, whole):
    """mmseg slide/whole inference around nvlabs_window; windows padded to the patch size."""
    patch = model.config.vision_config.patch_size
    _, H, W = pixels.shape

    def run(win):
        h, w = win.shape[-2:]
        padded = F.pad(win[None], (0, (-w) % patch, 0, (-h) % patch))
        return nvlabs_window(model, padded, text)[:, :h, :w]

    if whole:
        preds = run(pixels)
    else:
        preds = torch.zeros(text.shape[0] + 1, H, W)
        count = torch.zeros(1, H, W)
        rows = max(H - crop + stride - 1, 0) // stride + 1
        cols = max(W - crop + stride - 1, 0) // stride + 1
        for r in range(rows):
            for c in range(cols):
                y1, x1 = r * stride, c * stride
                y2, x2 = min(y1 + crop, H), min(x1 + crop, W)
                y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
                preds[:, y1:y2, x1:x2] += run(pixels[:, y1:y2, x1:x2])
                count[:, y1:y2, x1:x2] += 1
        preds = preds / count
    return F.interpolate(preds[None], size=orig_hw, mode="bilinear", align_corners=False)[0]


def nvlabs_pixels(image, short, long, resize):
    resized = nvlabs_resize(image, short, long, resize)
    return torch.from_numpy(nvlabs_normaliser()(images=resized, return_tensors="np")["pixel_values"][0])


def build(out):
    from transformers import CLIPImageProcessor, CLIPImageProcessorPil, CLIPTokenizer, GroupViTModel

    spec = __import__("importlib.util").util.find_spec("open_clip")
    gz = Path(spec.submodule_search_locations[0]) / "bpe_simple_vocab_16e6.txt.gz"
    hf = out / "hf"
    write_hf_folder(str(gz), str(hf))
    torch.manual_seed(7)
    model = GroupViTModel(model_config()).eval()
    randomise(model, 7)
    CLIPImageProcessor().save_pretrained(hf)
    model.save_pretrained(hf)
    subprocess.run([sys.executable, str(HERE / "convert_hf.py"), str(hf), str(out / "model")], check=True,
                   stdout=subprocess.DEVNULL)
    model = GroupViTModel.from_pretrained(str(hf)).eval()
    tokenizer = CLIPTokenizer.from_pretrained(str(hf))
    write_images(out)
    refs = out / "refs"
    refs.mkdir()
    manifest = {"labels": LABELS, "embed_texts": EMBED_TEXTS, "nvlabs_cases": {}, "hf_images": []}

    with torch.no_grad():
        # embed: the reference's features through the reference's front end.
        proc = CLIPImageProcessorPil.from_pretrained(str(hf))
        embed_images = ["chelsea.png", "astronaut.jpg", "odd_97x131.png"]
        pix = proc(images=[Image.open(out / "images" / n).convert("RGB") for n in embed_images],
                   return_tensors="pt")["pixel_values"]
        tok = tokenizer(EMBED_TEXTS, padding=True, return_tensors="pt")
        torch.save({"images": embed_images, "image_embeds": features(model.get_image_features(pixel_values=pix)),
                    "text_embeds": features(model.get_text_features(**tok))}, refs / "embed.pt")

        # hf: segmentation_logits of the whole image resized to 224x224, prompts "a photo of a {}."
        prompts = [f"a photo of a {label}." for label in LABELS]
        tok = tokenizer(prompts, padding=True, return_tensors="pt")
        square = CLIPImageProcessorPil.from_pretrained(str(hf), size={"height": 224, "width": 224},
                                                       do_center_crop=False)
        for name in ["chelsea.png", "odd_97x131.png", "tall_41x301.png"]:
            p = square(images=Image.open(out / "images" / name).convert("RGB"), return_tensors="pt")["pixel_values"]
            seg = model(input_ids=tok.input_ids, attention_mask=tok.attention_mask, pixel_values=p,
                        output_segmentation=True).segmentation_logits[0]
            np.save(refs / f"hf_{name}.npy", seg.float().numpy())
            manifest["hf_images"].append(name)

        # nvlabs: class embeddings (mean over templates of projected features, then L2), then the head.
        text = l2(features(model.get_text_features(**tok)))
        for case, (name, o) in NV_CASES.items():
            image = Image.open(out / "images" / name).convert("RGB")
            pixels = nvlabs_pixels(image, o["short"], o["long"], o["resize"])
            scores = nvlabs_segment(model, pixels, text, (image.height, image.width), o["crop"], o["stride"],
                                    o["whole"])
            np.save(refs / f"nv_{case}.npy", scores.numpy())
            manifest["nvlabs_cases"][case] = {"image": name, **o}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    if (out / "manifest.json").exists():
        print(f"{out}: up to date")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=out.name + ".tmp"))
    try:
        build(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    print(f"wrote CLI fixtures to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
