#!/usr/bin/env python3
"""Reference outputs for the int8 parity tests (`--dtype int8`, LinearImpl::quantize_int8).

    scripts/make_int8_fixtures.py PARITY_DIR [--cases full small two_stage]

For each parity case (made by make_parity_fixtures.py) it loads the Hugging Face checkpoint and
quantizes it as a Python user would: torch.ao.quantization.quantize_dynamic with
per_channel_dynamic_qconfig on every nn.Linear but the grouping blocks' assign q_proj / k_proj
(the assignment logits stay float32, as in the C++ port), on the FBGEMM engine, which the C++
side picks too. On the case's own inputs it records

  PARITY_DIR/NAME/int8_ref.pt   image_features, text_features and the vision stages' soft
                                assignments of the quantized model, and how far the reference moves
                                from itself when its input changes by 1e-7 (meta.nudged_*)

The float32 outputs are in ref.pt already; the C++ test compares both. Deterministic; remade when
missing or older than the case's ref.pt.
"""
import argparse
import os
import sys
from pathlib import Path

import torch

ASSIGN_LINEARS = ("assign.q_proj", "assign.k_proj")


def quantized_reference(hf_dir: Path):
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    from transformers import GroupViTModel

    model = GroupViTModel.from_pretrained(str(hf_dir)).eval()
    names = {name: per_channel_dynamic_qconfig for name, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and not name.endswith(ASSIGN_LINEARS)}
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        sys.exit("this torch has no FBGEMM quantized engine")
    torch.backends.quantized.engine = "fbgemm"
    import warnings

    with warnings.catch_warnings():  # torch.ao's eager quantization now points users to torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, qconfig_spec=names, dtype=torch.qint8), sorted(names)


def make_case(case_dir: Path):
    import warnings

    ref = torch.load(case_dir / "ref.pt")
    model, names = quantized_reference(case_dir / "hf")
    ids, mask, pixels = ref["input.input_ids"], ref["input.attention_mask"], ref["input.pixel_values"]
    if tuple(pixels.shape[2:]) != (model.config.vision_config.image_size,) * 2:
        sys.exit(f"{case_dir.name}: not at the model's native size")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vision = model.vision_model(pixel_values=pixels, output_attentions=True, return_dict=True)
        out = {"image_features": model.visual_projection(vision.pooler_output),
               "text_features": model.get_text_features(input_ids=ids, attention_mask=mask)}
        if hasattr(out["text_features"], "pooler_output"):  # transformers 5 returns an output object
            out["text_features"] = out["text_features"].pooler_output
        for i, a in enumerate(vision.attentions):
            out[f"vision.attentions.{i}"] = a
        # The reference against itself: the same model on the inputs changed by 1e-7 relative. Dynamic
        # quantization re-derives every activation's scale per call, so such a change re-rounds all of
        # them; on a model with near-tied assignments (seen: the seeded full-size one) this flips
        # hard assignments by itself. The C++ test allows what this shows.
        g = torch.Generator().manual_seed(7)
        worst_err, agreement = 0.0, [1.0] * len(vision.attentions)
        for _ in range(3):
            nudged = pixels * (1 + 1e-7 * torch.randn(pixels.shape, generator=g))
            v2 = model.vision_model(pixel_values=nudged, output_attentions=True, return_dict=True)
            f2 = model.visual_projection(v2.pooler_output)
            err = ((f2 - out["image_features"]).abs().max() / out["image_features"].abs().max()).item()
            worst_err = max(worst_err, err)
            for i, a in enumerate(v2.attentions):
                same = (a.argmax(1) == vision.attentions[i].argmax(1)).double().mean().item()
                agreement[i] = min(agreement[i], same)
    record = {k: v.detach().contiguous() for k, v in out.items()}
    record["meta.nudged_feature_err"] = torch.tensor(worst_err, dtype=torch.float64)
    record["meta.nudged_agreement"] = torch.tensor(agreement, dtype=torch.float64)
    record["meta.quantized_layers"] = torch.tensor([len(names)])
    tmp = case_dir / "int8_ref.pt.tmp"
    torch.save(record, tmp)
    os.replace(tmp, case_dir / "int8_ref.pt")
    print(f"{case_dir.name}: int8 reference from {len(names)} quantized Linear layers; against itself with inputs "
          f"nudged by 1e-7: features rel.err {worst_err:.2e}, hard assignments agree {min(agreement):.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parity_dir", type=Path)
    parser.add_argument("--cases", nargs="*", default=["full", "small", "two_stage"])
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    for name in args.cases:
        case_dir = args.parity_dir / name
        out = case_dir / "int8_ref.pt"
        if out.exists() and out.stat().st_mtime >= (case_dir / "ref.pt").stat().st_mtime:
            print(f"{name}: up to date")
            continue
        make_case(case_dir)


if __name__ == "__main__":
    main()
