#!/usr/bin/env python3
"""Reference Python trainer for a tiny GroupViT on the synthetic scenes of scripts/make_scenes.py.

It is the specification the C++ trainer reproduces (docs/training-recipe.md): the model is Hugging
Face's GroupViTModel (train mode: hard Gumbel assignment), the losses are HF's image-caption
contrastive loss plus NVlabs' multi-label contrastive loss over phrase prompts, the optimiser
AdamW with linear warm-up and cosine decay, gradient clipping by global norm.

    train_reference.py train --data DATA --tokenizer TOK --out DIR [--steps N] [--threads T] ...
    train_reference.py eval  --data DATA --model DIR [--bg-thresh 0.95] [--top-k 3]

One training step (train_step), exactly:
  texts   = for every image b: its caption, then K phrase prompts (b-major: [cap_0, p_0_0..p_0_K-1, cap_1, ...]);
            phrases: the image's "phrases", shuffled, cycled to length K, each formatted with a template
            drawn uniformly from TRAIN_TEMPLATES; tokenized with the CLIP tokenizer, padded with
            <|endoftext|> to max_position_embeddings (attention mask 0 on padding), never truncated.
  text    = text_projection(text_model(texts).pooler_output)      one pass over all B*(1+K) texts
            (the projection's BatchNorm sees captions and phrases together, as NVlabs does)
  image   = visual_projection(vision_model(pixels).pooler_output)  [B, C]
  loss    = groupvit_loss(captions, image)        HF: logits_per_text = norm(text) @ norm(image).T * exp(logit_scale)
          + ML_WEIGHT * multi_label_contrastive_loss(image, phrases [B, K, C], clamp(exp(ml_logit_scale), max=100))
  AdamW step on all parameters of the HF model plus ml_logit_scale (weight decay only on tensors with
  ndim >= 2), after clipping the global gradient norm.
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TRAIN_TEMPLATES = ["{}"]
EVAL_TEMPLATES = ["{}"]


# --- configuration --------------------------------------------------------------------------------

def build_config(vocab_size, image_size=36, patch_size=3, width=96, text_width=64, text_layers=2,
                 depths=(2, 2, 1), num_group_tokens=(16, 8, 0), num_output_groups=(16, 8, 8),
                 projection_dim=64, projection_intermediate_dim=256, max_position_embeddings=16,
                 heads=4, text_heads=4):
    from transformers import GroupViTConfig

    text = dict(vocab_size=vocab_size, hidden_size=text_width, intermediate_size=4 * text_width,
                num_hidden_layers=text_layers, num_attention_heads=text_heads,
                max_position_embeddings=max_position_embeddings,
                bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1)
    vision = dict(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=sum(depths),
                  depths=list(depths), num_group_tokens=list(num_group_tokens),
                  num_output_groups=list(num_output_groups), num_attention_heads=heads,
                  image_size=image_size, patch_size=patch_size)
    return GroupViTConfig(text_config=text, vision_config=vision, projection_dim=projection_dim,
                          projection_intermediate_dim=projection_intermediate_dim)


class MultiLabelScale(torch.nn.Module):
    """NVlabs' separate learned temperature of the multi-label loss, initialised to log(1/0.07)."""

    def __init__(self):
        super().__init__()
        self.ml_logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self):
        return self.ml_logit_scale.exp().clamp(max=100)


# --- data -----------------------------------------------------------------------------------------

def load_split(split_dir):
    """captions.jsonl of make_scenes.py -> (uint8 images [N, 3, S, S], rows)."""
    rows = [json.loads(l) for l in open(os.path.join(split_dir, "captions.jsonl")) if l.strip()]
    images = np.stack([np.asarray(Image.open(os.path.join(split_dir, r["image"])).convert("RGB")) for r in rows])
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), rows


def normalize_pixels(images_u8):
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (images_u8.float() / 255.0 - mean) / std


class TextCache:
    """Token ids of every text, padded with <|endoftext|> to a fixed length (never truncated)."""

    def __init__(self, tokenizer, length):
        self.tokenizer, self.length, self.cache = tokenizer, length, {}

    def ids(self, text):
        if text not in self.cache:
            ids = self.tokenizer(text)["input_ids"]
            if len(ids) > self.length:
                raise ValueError(f"{text!r}: {len(ids)} tokens > {self.length}")
            self.cache[text] = ids
        return self.cache[text]

    def batch(self, texts):
        pad = self.tokenizer.convert_tokens_to_ids("<|endoftext|>")
        ids = torch.full((len(texts), self.length), pad, dtype=torch.long)
        mask = torch.zeros((len(texts), self.length), dtype=torch.long)
        for i, t in enumerate(texts):
            x = self.ids(t)
            ids[i, :len(x)] = torch.tensor(x)
            mask[i, :len(x)] = 1
        return ids, mask


def sample_phrases(phrases, k, rng, templates=TRAIN_TEMPLATES):
    """K phrase prompts: the phrases shuffled and cycled to length K, each in a random template."""
    order = list(phrases)
    rng.shuffle(order)
    return [templates[rng.randrange(len(templates))].format(order[i % len(order)]) for i in range(k)]


def batch_texts(rows, k, rng):
    texts = []
    for r in rows:
        texts.append(r["caption"])
        texts.extend(sample_phrases(r["phrases"], k, rng))
    return texts


# --- losses ---------------------------------------------------------------------------------------

def contrastive_loss(logits_per_text):
    """HF groupvit_loss: mean of the two cross-entropies, targets on the diagonal."""
    target = torch.arange(logits_per_text.size(0))
    return (F.cross_entropy(logits_per_text, target) + F.cross_entropy(logits_per_text.t(), target)) / 2


def image_caption_loss(image_embeds, caption_embeds, logit_scale_param):
    image = F.normalize(image_embeds, dim=-1)
    text = F.normalize(caption_embeds, dim=-1)
    return contrastive_loss(text @ image.t() * logit_scale_param.exp())


def multi_label_contrastive_loss(image_embeds, phrase_embeds, scale):
    """NVlabs GroupViT multi_label_contrastive_loss (world size 1).

    image_embeds [B, C], phrase_embeds [B, K, C] (unnormalised), scale: a scalar tensor."""
    b, k, c = phrase_embeds.shape
    image = F.normalize(image_embeds, dim=-1)
    text = F.normalize(phrase_embeds, dim=-1).reshape(b * k, c)
    logits_per_img = image @ text.t() * scale                                    # [B, B*K]
    target_img = torch.eye(b).repeat_interleave(k, dim=1) / k                    # 1/K on its own K phrases
    loss_img = torch.sum(-target_img * F.log_softmax(logits_per_img, dim=-1), dim=-1).mean()
    logits_per_text = text @ image.t() * scale                                   # [B*K, B]
    loss_text = F.cross_entropy(logits_per_text, torch.arange(b).repeat_interleave(k))
    return 0.5 * (loss_img + loss_text)


def forward_losses(model, ml_scale, pixel_values, input_ids, attention_mask, k, ml_weight):
    b = pixel_values.size(0)
    vision = model.vision_model(pixel_values=pixel_values)
    image_embeds = model.visual_projection(vision.pooler_output)
    text = model.text_model(input_ids=input_ids, attention_mask=attention_mask)
    text_embeds = model.text_projection(text.pooler_output).reshape(b, 1 + k, -1)
    loss_cap = image_caption_loss(image_embeds, text_embeds[:, 0], model.logit_scale)
    loss_ml = multi_label_contrastive_loss(image_embeds, text_embeds[:, 1:], ml_scale()) if k > 0 else loss_cap * 0
    return loss_cap + ml_weight * loss_ml, loss_cap, loss_ml


# --- optimisation ---------------------------------------------------------------------------------

def make_optimizer(model, ml_scale, lr, weight_decay, betas=(0.9, 0.999), eps=1e-8):
    params = list(model.named_parameters()) + list(ml_scale.named_parameters())
    decay = [p for n, p in params if p.ndim >= 2]
    no_decay = [p for n, p in params if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=betas, eps=eps)


def lr_at(step, total, base_lr, warmup, min_lr=0.0):
    """Linear warm-up from 0 over `warmup` steps (step 0 -> base_lr/warmup), then cosine to min_lr."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * t))


def train_step(model, ml_scale, optimizer, pixel_values, input_ids, attention_mask, k, ml_weight, clip, lr):
    for g in optimizer.param_groups:
        g["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss, loss_cap, loss_ml = forward_losses(model, ml_scale, pixel_values, input_ids, attention_mask, k, ml_weight)
    loss.backward()
    params = [p for p in list(model.parameters()) + list(ml_scale.parameters()) if p.grad is not None]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
    optimizer.step()
    return {"loss": loss.item(), "cap": loss_cap.item(), "ml": loss_ml.item(), "grad_norm": grad_norm.item()}


def augment(images_u8, rng_t):
    """Random horizontal flip (the only augmentation, when enabled)."""
    flip = torch.rand(images_u8.size(0), generator=rng_t) < 0.5
    out = images_u8.clone()
    out[flip] = out[flip].flip(-1)
    return out


# --- zero-shot segmentation (NVlabs semantics, whole image) ----------------------------------------

@torch.no_grad()
def class_embeddings(model, tokenizer, classes, templates, length):
    cache = TextCache(tokenizer, length)
    texts = [t.format(c) for c in classes for t in templates]
    ids, mask = cache.batch(texts)
    feats = model.text_projection(model.text_model(input_ids=ids, attention_mask=mask).pooler_output)
    feats = F.normalize(feats, dim=-1).reshape(len(classes), len(templates), -1).mean(1)
    return F.normalize(feats, dim=-1)


@torch.no_grad()
def nvlabs_scores(model, pixel_values, class_embeds, bg_thresh=0.95, top_k=5):
    """[B, 1 + classes, H, W]: channel 0 background, as groupvit::nvlabs_window_scores."""
    b, _, h, w = pixel_values.shape
    patch = model.config.vision_config.patch_size
    vision = model.vision_model(pixel_values=pixel_values, output_attentions=True)
    chained = None
    for attn in vision.attentions:  # soft assignments [B, G, N]
        t = attn.permute(0, 2, 1)
        chained = t if chained is None else chained @ t
    grid = chained.permute(0, 2, 1).reshape(b, chained.size(2), h // patch, w // patch)
    group_of_pixel = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False).argmax(1)
    tokens = vision.last_hidden_state
    g = tokens.size(1)
    group_embeds = F.normalize(model.visual_projection(tokens.reshape(-1, tokens.size(-1))), dim=-1).reshape(b, g, -1)
    image_embeds = F.normalize(model.visual_projection(vision.pooler_output), dim=-1)
    scale = model.logit_scale.exp().clamp(max=100)
    n = class_embeds.size(0)
    aff = group_embeds @ class_embeds.t() * scale
    pre = aff.softmax(-1)
    img_aff = (image_embeds @ class_embeds.t() * scale).softmax(-1)
    top = img_aff.topk(min(top_k, n), dim=-1).indices
    keep = torch.zeros_like(img_aff, dtype=torch.bool).scatter_(1, top, True)
    aff = aff.masked_fill(~keep.unsqueeze(1), float("-inf")).softmax(-1) * pre      # [B, G, N]
    fg = torch.gather(aff, 1, group_of_pixel.reshape(b, -1, 1).expand(b, h * w, n))
    fg = fg.permute(0, 2, 1).reshape(b, n, h, w)
    thresh = aff.reshape(b, -1).amax(1).clamp(max=bg_thresh)
    bg = (fg.amax(1, keepdim=True) < thresh.view(b, 1, 1, 1)).float()
    return torch.cat([bg, fg], 1)


def seg_metrics(pred, label, num_classes):
    """pred, label: int arrays (label 255 ignored) -> fg pixel accuracy, mIoU, per-class IoU (incl. background)."""
    valid = label != 255
    fg = valid & (label > 0)
    acc = float((pred[fg] == label[fg]).mean()) if fg.any() else float("nan")
    ious = []
    for c in range(num_classes):
        p, l = (pred == c) & valid, (label == c) & valid
        union = (p | l).sum()
        ious.append(float((p & l).sum() / union) if union else float("nan"))
    return {"fg_acc": acc, "miou": float(np.nanmean(ious)), "iou": ious}


@torch.no_grad()
def evaluate(model, tokenizer, data_dir, bg_thresh=0.95, top_k=3, templates=EVAL_TEMPLATES, limit=None,
             batch_size=100):
    model.eval()
    val = os.path.join(data_dir, "val")
    images, rows = load_split(val)
    if limit:
        images, rows = images[:limit], rows[:limit]
    length = model.config.text_config.max_position_embeddings
    results = {}
    for kind in ("colour", "shape"):
        classes = [l.strip() for l in open(os.path.join(val, f"classes_{kind}.txt")) if l.strip()]
        emb = class_embeddings(model, tokenizer, classes[1:], templates, length)
        labels = np.stack([np.asarray(Image.open(os.path.join(val, r["image"].replace("images/", f"labels_{kind}/"))))
                           for r in rows])
        preds = []
        for s in range(0, len(rows), batch_size):
            scores = nvlabs_scores(model, normalize_pixels(images[s:s + batch_size]), emb, bg_thresh, top_k)
            preds.append(scores.argmax(1).numpy())
        m = seg_metrics(np.concatenate(preds), labels, len(classes))
        m["classes"] = classes
        results[kind] = m
    model.train()
    return results


def format_eval(res):
    out = []
    for kind, m in res.items():
        per = " ".join(f"{c}={v:.2f}" for c, v in zip(m["classes"], m["iou"]))
        out.append(f"{kind}: fg_acc {m['fg_acc']:.3f} mIoU {m['miou']:.3f} ({per})")
    return "\n".join(out)


# --- saving ---------------------------------------------------------------------------------------

def save_hf(model, ml_scale, tokenizer, out_dir, image_size, tokenizer_dir):
    import shutil

    from transformers import CLIPImageProcessor

    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    # transformers 5 writes only tokenizer.json; the C++ tokenizer (and convert_hf.py) need the small
    # vocab.json + merges.txt, else they fall back to the full CLIP vocabulary (wrong ids).
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
        if os.path.exists(os.path.join(tokenizer_dir, name)):
            shutil.copy(os.path.join(tokenizer_dir, name), os.path.join(out_dir, name))
    CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
                       image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD)).save_pretrained(out_dir)
    torch.save({"ml_logit_scale": ml_scale.ml_logit_scale.detach()}, os.path.join(out_dir, "ml_logit_scale.pt"))


# --- main -----------------------------------------------------------------------------------------

def cmd_train(a):
    from transformers import CLIPTokenizerFast, GroupViTModel

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    tokenizer = CLIPTokenizerFast.from_pretrained(a.tokenizer)
    images, rows = load_split(os.path.join(a.data, "train"))
    image_size = images.size(-1)
    config = build_config(len(tokenizer), image_size=image_size, patch_size=a.patch, width=a.width,
                          text_width=a.text_width, text_layers=a.text_layers, depths=a.depths,
                          num_group_tokens=a.group_tokens, num_output_groups=a.output_groups,
                          projection_dim=a.proj_dim, projection_intermediate_dim=a.proj_hidden,
                          max_position_embeddings=a.context)
    model = GroupViTModel(config)
    model.train()
    ml_scale = MultiLabelScale()
    nparams = sum(p.numel() for p in model.parameters())
    print(f"params {nparams} ({nparams * 4 / 2**20:.2f} MiB fp32), train scenes {len(rows)}, image {image_size}, "
          f"tokens {(image_size // a.patch) ** 2}", flush=True)
    opt = make_optimizer(model, ml_scale, a.lr, a.wd)
    texts = TextCache(tokenizer, a.context)
    gen = torch.Generator().manual_seed(a.seed)
    log, t0, order, pos = [], time.time(), torch.randperm(len(rows), generator=gen), 0
    for step in range(a.steps):
        if pos + a.batch > len(rows):
            order, pos = torch.randperm(len(rows), generator=gen), 0
        idx = order[pos:pos + a.batch]
        pos += a.batch
        batch_imgs = images[idx]
        if a.flip:
            batch_imgs = augment(batch_imgs, gen)
        ids, mask = texts.batch(batch_texts([rows[i] for i in idx.tolist()], a.k, rng))
        lr = lr_at(step, a.steps, a.lr, a.warmup)
        s = train_step(model, ml_scale, opt, normalize_pixels(batch_imgs), ids, mask, a.k, a.ml_weight, a.clip, lr)
        s.update(step=step, time=time.time() - t0, lr=lr, scale=model.logit_scale.exp().item(),
                 ml_scale=ml_scale().item())
        log.append(s)
        if step % a.log_every == 0 or step == a.steps - 1:
            print(f"step {step} t {s['time']:.0f}s loss {s['loss']:.3f} cap {s['cap']:.3f} ml {s['ml']:.3f} "
                  f"gn {s['grad_norm']:.2f} lr {lr:.2e} scale {s['scale']:.1f} ml_scale {s['ml_scale']:.1f}",
                  flush=True)
        if a.eval_every and step and step % a.eval_every == 0:
            print(format_eval(evaluate(model, tokenizer, a.data, a.bg_thresh, a.top_k, limit=200)), flush=True)
    train_time = time.time() - t0
    print(f"trained {a.steps} steps in {train_time:.0f} s", flush=True)
    save_hf(model, ml_scale, tokenizer, a.out, image_size, a.tokenizer)
    json.dump({"args": vars(a), "train_time_s": train_time, "params": nparams, "log": log},
              open(os.path.join(a.out, "train_log.json"), "w"))
    res = evaluate(model, tokenizer, a.data, a.bg_thresh, a.top_k)
    print(format_eval(res), flush=True)


def cmd_eval(a):
    from transformers import CLIPTokenizerFast, GroupViTModel

    torch.set_num_threads(a.threads)
    model = GroupViTModel.from_pretrained(a.model)
    tokenizer = CLIPTokenizerFast.from_pretrained(a.model)
    templates = [l.rstrip("\n") for l in open(a.templates)] if a.templates else EVAL_TEMPLATES
    for bg in a.bg_thresh:
        print(f"bg_thresh {bg} top_k {a.top_k}")
        print(format_eval(evaluate(model, tokenizer, a.data, bg, a.top_k, templates=templates)), flush=True)


def cmd_score(a):
    """Metrics of label PNGs written by `groupvit segment` (OUT/NNNNNN.png.labels.png) against the val labels."""
    val = os.path.join(a.data, "val")
    rows = [json.loads(l) for l in open(os.path.join(val, "captions.jsonl")) if l.strip()]
    classes = [l.strip() for l in open(os.path.join(val, f"classes_{a.kind}.txt")) if l.strip()]
    preds, labels = [], []
    for r in rows:
        preds.append(np.asarray(Image.open(os.path.join(a.pred, os.path.basename(r["image"]) + ".labels.png"))))
        labels.append(np.asarray(Image.open(os.path.join(val, r["image"].replace("images/", f"labels_{a.kind}/")))))
    m = seg_metrics(np.stack(preds), np.stack(labels), len(classes))
    m["classes"] = classes
    print(format_eval({a.kind: m}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--tokenizer", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--steps", type=int, default=700)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--k", type=int, default=6)
    t.add_argument("--ml-weight", type=float, default=1.0)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--wd", type=float, default=0.05)
    t.add_argument("--warmup", type=int, default=50)
    t.add_argument("--clip", type=float, default=1.0)
    t.add_argument("--flip", action="store_true")
    t.add_argument("--patch", type=int, default=3)
    t.add_argument("--width", type=int, default=96)
    t.add_argument("--text-width", type=int, default=64)
    t.add_argument("--text-layers", type=int, default=2)
    t.add_argument("--depths", type=int, nargs="+", default=[2, 2, 1])
    t.add_argument("--group-tokens", type=int, nargs="+", default=[16, 8, 0])
    t.add_argument("--output-groups", type=int, nargs="+", default=[16, 8, 8])
    t.add_argument("--proj-dim", type=int, default=64)
    t.add_argument("--proj-hidden", type=int, default=256)
    t.add_argument("--context", type=int, default=16)
    t.add_argument("--log-every", type=int, default=25)
    t.add_argument("--eval-every", type=int, default=0)
    t.add_argument("--bg-thresh", type=float, default=0.95)
    t.add_argument("--top-k", type=int, default=3)
    e = sub.add_parser("eval")
    e.add_argument("--data", required=True)
    e.add_argument("--model", required=True)
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--bg-thresh", type=float, nargs="+", default=[0.95])
    e.add_argument("--top-k", type=int, default=3)
    e.add_argument("--templates", default=None)
    sc = sub.add_parser("score")
    sc.add_argument("--data", required=True)
    sc.add_argument("--pred", required=True)
    sc.add_argument("--kind", choices=["colour", "shape"], required=True)
    a = p.parse_args(argv)
    {"train": cmd_train, "eval": cmd_eval, "score": cmd_score}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
