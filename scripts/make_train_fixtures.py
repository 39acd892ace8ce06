#!/usr/bin/env python3
"""Reference for the C++ training-step test, made with Hugging Face transformers.

    scripts/make_train_fixtures.py OUT_DIR [--force]

A seeded small GroupViTModel (saved with save_pretrained, converted by scripts/convert_hf.py)
takes two optimisation steps the way NVlabs trains GroupViT: train mode (hard Gumbel-softmax
assignment, BatchNorm on batch statistics), the image-caption contrastive loss plus the
multi-label contrastive loss over each image's phrases (models/multi_label_contrastive.py in
NVlabs/GroupViT, one process), AdamW with the trainer's parameter groups, warm-up learning rate
and gradient clipping. The Gumbel noise comes from torch's default generator, seeded before
each step, which LibTorch reproduces draw for draw.

  OUT_DIR/model/      the converted model (initial weights)
  OUT_DIR/ref.pt      inputs, options, per-step losses and gradients, weights after each step
"""
import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_parity_fixtures import atomic_save, make_text_inputs, randomise, small_config  # noqa: E402
from train_reference import multi_label_contrastive_loss  # noqa: E402  (NVlabs' loss, one process)

# Must match groupvit::TrainOptions as the C++ test sets it (the test reads them from ref.pt).
OPTIONS = dict(steps=10, batch_size=3, lr=2e-3, min_lr=1e-5, warmup_steps=3, weight_decay=0.05, beta1=0.9,
               beta2=0.98, eps=1e-8, grad_clip=0.5, phrases_per_image=2, multi_label_weight=0.7, seed=5)
MAX_LOGIT_SCALE = 100.0
STEPS = 2


def training_losses(model, ml_scale, pixels, ids, mask, k, weight):
    b = pixels.shape[0]
    image_features = model.get_image_features(pixel_values=pixels).pooler_output
    text_features = model.get_text_features(input_ids=ids, attention_mask=mask).pooler_output.reshape(b, 1 + k, -1)
    image = F.normalize(image_features, dim=-1)
    caption = F.normalize(text_features[:, 0], dim=-1)
    scale = model.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
    logits_per_text = caption @ image.t() * scale
    labels = torch.arange(b)
    contrastive = 0.5 * (F.cross_entropy(logits_per_text, labels) + F.cross_entropy(logits_per_text.t(), labels))
    multi = multi_label_contrastive_loss(image_features, text_features[:, 1:], ml_scale.exp().clamp(max=MAX_LOGIT_SCALE))
    return contrastive + weight * multi, contrastive, multi


def no_decay(name, p):
    return p.dim() <= 1 or "embedding" in name or "group_token" in name


def learning_rate_at(o, step):
    if step < o["warmup_steps"]:
        return o["lr"] * (step + 1) / (o["warmup_steps"] + 1)
    progress = min(1.0, (step - o["warmup_steps"]) / max(1, o["steps"] - o["warmup_steps"]))
    return o["min_lr"] + 0.5 * (o["lr"] - o["min_lr"]) * (1 + math.cos(math.pi * progress))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    stamp = __import__("hashlib").sha256(Path(__file__).read_bytes() + (HERE / "make_parity_fixtures.py").read_bytes()
                                         + (HERE / "convert_hf.py").read_bytes() + (HERE / "train_reference.py").read_bytes()).hexdigest()
    stamp_file = args.out_dir / "stamp.txt"
    if (args.out_dir / "ref.pt").exists() and stamp_file.exists() and stamp_file.read_text() == stamp and not args.force:
        print("training fixtures: up to date")
        return
    from transformers import GroupViTModel

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    o = OPTIONS
    config = small_config()
    torch.manual_seed(11)
    model = GroupViTModel(config)
    randomise(model, 11)
    model.save_pretrained(str(args.out_dir / "hf"))
    subprocess.run([sys.executable, str(HERE / "convert_hf.py"), str(args.out_dir / "hf"), str(args.out_dir / "model")],
                   check=True)

    b, k = o["batch_size"], o["phrases_per_image"]
    g = torch.Generator().manual_seed(77)
    record = {"options": torch.tensor(list(json.dumps(o).encode()), dtype=torch.uint8)}
    model.train()
    ml_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    decay, other = [], []
    for name, p in model.named_parameters():
        (other if no_decay(name, p) else decay).append(p)
    other.append(ml_scale)
    optimizer = torch.optim.AdamW([{"params": decay}, {"params": other, "weight_decay": 0.0}], lr=o["lr"],
                                  betas=(o["beta1"], o["beta2"]), eps=o["eps"], weight_decay=o["weight_decay"])
    params = decay + other
    for step in range(STEPS):
        pixels = torch.randn((b, 3, 64, 64), generator=g)
        ids, mask = make_text_inputs(config, b * (1 + k), 500 + step)
        record[f"step{step}.pixel_values"] = pixels
        record[f"step{step}.input_ids"] = ids
        record[f"step{step}.attention_mask"] = mask
        lr = learning_rate_at(o, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        torch.manual_seed(1000 + step)  # the Gumbel noise of this step
        total, contrastive, multi = training_losses(model, ml_scale, pixels, ids, mask, k, o["multi_label_weight"])
        total.backward()
        for name, p in model.named_parameters():
            record[f"step{step}.grad.{name}"] = p.grad.detach().clone()
        record[f"step{step}.grad.multi_label_logit_scale"] = ml_scale.grad.detach().clone()
        norm = torch.nn.utils.clip_grad_norm_(params, o["grad_clip"])
        optimizer.step()
        record[f"step{step}.loss"] = total.detach()
        record[f"step{step}.contrastive_loss"] = contrastive.detach()
        record[f"step{step}.multi_label_loss"] = multi.detach()
        record[f"step{step}.grad_norm"] = norm.detach()
        record[f"step{step}.lr"] = torch.tensor(lr, dtype=torch.float64)
        for name, p in model.named_parameters():
            record[f"step{step}.param.{name}"] = p.detach().clone()
        record[f"step{step}.param.multi_label_logit_scale"] = ml_scale.detach().clone()
        print(f"step {step}: loss {total.item():.6f} (contrastive {contrastive.item():.6f}, multi-label "
              f"{multi.item():.6f}), grad norm {norm.item():.4f}")
    atomic_save(record, args.out_dir / "ref.pt")
    stamp_file.write_text(stamp)


if __name__ == "__main__":
    main()
