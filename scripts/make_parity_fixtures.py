#!/usr/bin/env python3
"""Reference outputs for the C++ parity tests, made with Hugging Face transformers.

    scripts/make_parity_fixtures.py OUT_DIR [--only NAME ...] [--force]

For each configuration it builds a seeded GroupViTModel, saves it with save_pretrained as a
user's download would be (model.safetensors, or pytorch_model.bin for one case), converts it
with scripts/convert_hf.py, and records inputs and every output the C++ port must reproduce:

  OUT_DIR/NAME/hf/        the Hugging Face checkpoint
  OUT_DIR/NAME/model/     the converted model directory (what the C++ loader reads)
  OUT_DIR/NAME/ref.pt     torch.save of a plain dict of tensors (inputs, hidden states,
                          assignment maps, embeddings, logits, segmentation, loss, gradients)

Cases whose outputs exist are skipped (the script is deterministic); --force remakes them.
"""
import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent

# Minimum top-1/top-2 gap of the reference's soft assignment (over groups) accepted for a
# fixture. Below it, an fp32 rounding difference could legitimately flip the hard argmax;
# seeds are advanced until every token clears it, so a flip in C++ means a real bug.
MIN_ASSIGN_MARGIN = 1e-5


def full_config():
    from transformers import GroupViTConfig

    # nvidia/groupvit-gcc-yfcc's sizes, with its legacy text ids (bos 0, eos 2): argmax pooling.
    return GroupViTConfig(text_config={"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}, vision_config={})


def small_config():
    from transformers import GroupViTConfig

    return GroupViTConfig(
        text_config=dict(vocab_size=1000, hidden_size=64, intermediate_size=144, num_hidden_layers=3,
                         num_attention_heads=2, max_position_embeddings=24, hidden_act="gelu",
                         bos_token_id=998, eos_token_id=999, pad_token_id=999),
        vision_config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=4, depths=[2, 1, 1],
                           num_group_tokens=[16, 4, 0], num_output_groups=[16, 4, 4], num_attention_heads=3,
                           image_size=64, patch_size=8, hidden_act="quick_gelu", assign_mlp_ratio=[0.5, 2],
                           assign_eps=0.5),
        projection_dim=32, projection_intermediate_dim=80, logit_scale_init_value=2.0,
    )


def two_stage_config():
    from transformers import GroupViTConfig

    return GroupViTConfig(
        text_config=dict(vocab_size=500, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=16, bos_token_id=498, eos_token_id=499,
                         pad_token_id=0),
        vision_config=dict(hidden_size=40, intermediate_size=80, num_hidden_layers=3, depths=[2, 1],
                           num_group_tokens=[10, 0], num_output_groups=[6, 6], num_attention_heads=5,
                           image_size=48, patch_size=12, hidden_act="gelu", assign_mlp_ratio=[1.0, 2.0]),
        projection_dim=24, projection_intermediate_dim=40,
    )


# name -> (config factory, image (H, W), image batch, texts, weights format, seed)
CASES = {
    "full": (full_config, (224, 224), 2, 2, "safetensors", 0),
    "full_nonsquare": (full_config, (224, 320), 2, 3, "shared:full", 0),
    "small": (small_config, (64, 64), 3, 3, "bin", 1),
    "small_nonsquare": (small_config, (48, 80), 2, 4, "shared:small", 1),
    "two_stage": (two_stage_config, (48, 48), 2, 2, "safetensors", 2),
}


def randomise(model, seed):
    """Make every parameter and buffer informative: no zero biases, unit norms or zero
    group tokens that would hide a mistake (e.g. a missing bias or swapped LayerNorm)."""
    g = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                continue
            if name.endswith("group_token") or name.endswith("position_embeddings"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            else:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)


def make_text_inputs(config, n_texts, seed):
    """Token ids as a CLIP tokenizer pads them: BOS, words, EOS, then padding (mask 0)."""
    tc = config.text_config
    g = torch.Generator().manual_seed(2000 + seed)
    max_len = min(tc.max_position_embeddings, 16)
    legacy = tc.eos_token_id == 2
    bos, eos = (49406, 49407) if legacy else (tc.bos_token_id, tc.eos_token_id)
    pad = eos if legacy else tc.pad_token_id
    top = 49405 if legacy else min(bos, eos, tc.vocab_size) - 1
    lengths = [max_len] + [int(torch.randint(3, max_len, (1,), generator=g)) for _ in range(n_texts - 1)]
    ids = torch.full((n_texts, max_len), pad, dtype=torch.long)
    mask = torch.zeros((n_texts, max_len), dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, 0] = bos
        ids[i, 1:n - 1] = torch.randint(3, top, (n - 2,), generator=g)
        ids[i, n - 1] = eos
        mask[i, :n] = 1
    return ids, mask


def assignment_margins(attentions):
    margins = []
    for attn in attentions:  # [B, G, N], softmax over G
        top2 = attn.float().topk(2, dim=1).values
        margins.append((top2[:, 0] - top2[:, 1]).min().item())
    return margins


def vision_forward(model, pixel_values, interpolate):
    """The reference vision tower, through its own modules; with interpolate=True the
    embeddings module resizes the position embeddings (HF's forward never enables it)."""
    vm = model.vision_model
    if not interpolate:
        return vm(pixel_values, output_hidden_states=True, output_attentions=True, return_dict=True)
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    hidden = vm.embeddings(pixel_values, interpolate_pos_encoding=True)
    enc = vm.encoder(hidden, output_hidden_states=True, output_attentions=True, return_dict=True)
    last = vm.layernorm(enc.last_hidden_state)
    return BaseModelOutputWithPooling(last_hidden_state=last, pooler_output=last.mean(dim=1),
                                      hidden_states=enc.hidden_states, attentions=enc.attentions)


def reference_outputs(model, ids, mask, pixels, interpolate):
    """Everything GroupViTModel.forward computes, with the vision tower possibly run through
    vision_forward; the formulas below are the reference forward's, through its helpers."""
    from transformers.models.groupvit import modeling_groupvit as mg

    out = {}
    vision = vision_forward(model, pixels, interpolate)
    text = model.text_model(input_ids=ids, attention_mask=mask, output_hidden_states=True, return_dict=True)
    image_features = model.visual_projection(vision.pooler_output)
    text_features = model.text_projection(text.pooler_output)
    image_embeds = image_features / image_features.norm(dim=-1, keepdim=True)
    text_embeds = text_features / text_features.norm(dim=-1, keepdim=True)
    scale = model.logit_scale.exp()
    logits_per_text = text_embeds @ image_embeds.t() * scale
    # The contrastive loss pairs image i with text i: defined for equal batch sizes only.
    if ids.shape[0] == pixels.shape[0]:
        out["loss"] = mg.image_text_contrastive_loss(logits_per_text)

    groups = model.visual_projection(vision.last_hidden_state.reshape(-1, vision.last_hidden_state.shape[-1]))
    groups = groups / groups.norm(dim=-1, keepdim=True)
    grouping = mg.get_grouping_from_attentions(vision.attentions, pixels.shape[2:])
    per_group = (groups @ text_embeds.t() * scale).reshape(pixels.shape[0], -1, ids.shape[0]).permute(0, 2, 1)
    seg = (per_group @ grouping.reshape(grouping.shape[0], grouping.shape[1], -1)) * scale
    seg = seg.reshape(seg.shape[0], seg.shape[1], grouping.shape[2], grouping.shape[3])

    for i, h in enumerate(text.hidden_states):
        out[f"text.hidden_states.{i}"] = h
    out["text.last_hidden_state"] = text.last_hidden_state
    out["text.pooler_output"] = text.pooler_output
    for i, h in enumerate(vision.hidden_states):
        out[f"vision.hidden_states.{i}"] = h
    for i, a in enumerate(vision.attentions):
        out[f"vision.attentions.{i}"] = a
    out["vision.last_hidden_state"] = vision.last_hidden_state
    out["vision.pooler_output"] = vision.pooler_output
    out.update(text_features=text_features, image_features=image_features, text_embeds=text_embeds,
               image_embeds=image_embeds, logits_per_text=logits_per_text, logits_per_image=logits_per_text.t(),
               segmentation_logits=seg)
    return out, vision.attentions


def check_against_forward(model, ids, mask, pixels, ref):
    """Where the reference's own forward applies (native size), it must equal what we record."""
    with torch.no_grad():
        o = model(input_ids=ids, pixel_values=pixels, attention_mask=mask, return_loss="loss" in ref,
                  output_segmentation=True, output_hidden_states=True)
    pairs = [("logits_per_image", o.logits_per_image), ("segmentation_logits", o.segmentation_logits),
             ("text_embeds", o.text_embeds), ("image_embeds", o.image_embeds)]
    if "loss" in ref:
        pairs.append(("loss", o.loss))
    for key, value in pairs:
        if not torch.allclose(ref[key], value, rtol=0, atol=1e-6):
            raise SystemExit(f"internal error: {key} differs from GroupViTModel.forward")
    fx = model.get_image_features(pixel_values=pixels)
    fx = fx.pooler_output if hasattr(fx, "pooler_output") else fx
    if not torch.allclose(ref["image_features"], fx, rtol=0, atol=1e-6):
        raise SystemExit("internal error: image_features differ from get_image_features")


def save_checkpoint(model, hf_dir: Path, fmt: str):
    model.save_pretrained(str(hf_dir))
    if fmt == "bin":  # the older layout: a torch.save'd state dict
        (hf_dir / "model.safetensors").unlink()
        torch.save(model.state_dict(), hf_dir / "pytorch_model.bin")


def atomic_save(obj, path: Path):
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def make_case(out_dir: Path, name: str):
    from transformers import GroupViTModel

    factory, (height, width), n_images, n_texts, fmt, seed = CASES[name]
    case_dir = out_dir / name
    case_dir.mkdir(parents=True, exist_ok=True)
    config = factory()

    if fmt.startswith("shared:"):
        base = out_dir / fmt.split(":")[1]
        model = GroupViTModel.from_pretrained(str(base / "hf")).eval()
        model_dir = base / "model"
        attempt_seed = int((base / "seed.txt").read_text())
    else:
        attempt_seed = None
    native = (height, width) == (config.vision_config.image_size,) * 2

    for attempt in range(20):
        s = seed * 100 + attempt
        if attempt_seed is None:
            torch.manual_seed(s)
            model = GroupViTModel(config).eval()
            randomise(model, s)
        g = torch.Generator().manual_seed(3000 + s)
        pixels = torch.randn((n_images, 3, height, width), generator=g)
        ids, mask = make_text_inputs(config, n_texts, s)
        with torch.no_grad():
            ref, attentions = reference_outputs(model, ids, mask, pixels, interpolate=not native)
        margins = assignment_margins(attentions)
        if min(margins) >= MIN_ASSIGN_MARGIN:
            break
        print(f"{name}: seed {s} has a near-tied assignment (margin {min(margins):.2e}); trying the next seed")
    else:
        raise SystemExit(f"{name}: no seed without near ties")

    if native:
        check_against_forward(model, ids, mask, pixels, ref)

    # Gradients of the contrastive loss, eval-mode (hard) assignment, with respect to every parameter.
    grads = {}
    if "loss" in ref:
        model.zero_grad(set_to_none=True)
        with_grad, _ = reference_outputs(model, ids, mask, pixels, interpolate=not native)
        with_grad["loss"].backward()
        grads = {f"grad.{n}": p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}

    # Training mode: BatchNorm uses batch statistics (text side: deterministic, no Gumbel noise).
    # On a copy, because a training-mode forward also updates the running statistics.
    trained = copy.deepcopy(model).train()
    with torch.no_grad():
        train_text = trained.text_projection(trained.text_model(input_ids=ids, attention_mask=mask).pooler_output)
    del trained

    record = {k: v.detach().contiguous() for k, v in ref.items()}
    record.update(grads)
    record.update({"input.input_ids": ids, "input.attention_mask": mask, "input.pixel_values": pixels,
                   "train.text_features": train_text,
                   "meta.assign_margins": torch.tensor(margins, dtype=torch.float64)})

    if attempt_seed is None:
        hf_dir = case_dir / "hf"
        save_checkpoint(model, hf_dir, fmt)
        model_dir = case_dir / "model"
        subprocess.run([sys.executable, str(HERE / "convert_hf.py"), str(hf_dir), str(model_dir)], check=True)
        if name == "small":  # half-precision storage, which the loader widens back into fp32 parameters
            for dtype in ("fp16", "bf16"):
                subprocess.run([sys.executable, str(HERE / "convert_hf.py"), str(hf_dir), str(case_dir / f"model_{dtype}"),
                                "--dtype", dtype], check=True)
        (case_dir / "seed.txt").write_text(str(s))
    (case_dir / "info.json").write_text(json.dumps({
        "model_dir": os.path.relpath(model_dir, case_dir), "height": height, "width": width, "images": n_images, "texts": n_texts,
        "native_size": native, "assign_margins": margins, "seed": s}, indent=1))
    atomic_save(record, case_dir / "ref.pt")
    print(f"{name}: {len(record)} reference tensors ({len(grads)} gradients), "
          f"min assignment margin {min(margins):.3e}")


def fixture_stamp() -> str:
    """Changes whenever a script that shapes the fixtures changes, so stale ones are remade."""
    import hashlib

    h = hashlib.sha256()
    for script in (Path(__file__), HERE / "convert_hf.py"):
        h.update(script.read_bytes())
    import transformers

    h.update(f"{torch.__version__} {transformers.__version__}".encode())
    return h.hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--only", nargs="*", choices=list(CASES))
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stamp_file = args.out_dir / "stamp.txt"
    stamp = fixture_stamp()
    if stamp_file.exists() and stamp_file.read_text() != stamp:
        print("fixture scripts changed: remaking every case")
        args.force = True
    for name in args.only or list(CASES):
        if (args.out_dir / name / "ref.pt").exists() and not args.force:
            print(f"{name}: up to date")
            continue
        make_case(args.out_dir, name)
    if not args.only:
        stamp_file.write_text(stamp)


if __name__ == "__main__":
    main()
