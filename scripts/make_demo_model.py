#!/usr/bin/env python3
"""An UNTRAINED GroupViT in the real Hugging Face layout, for the demo when no hub is reachable.

    scripts/make_demo_model.py OUT_DIR

Writes OUT_DIR/hf: a seeded random GroupViTModel with nvidia/groupvit-gcc-yfcc's sizes, saved
with save_pretrained, plus the CLIP tokenizer (built offline from the BPE vocabulary shipped in
open-clip-torch) and CLIP image processor files, exactly as a hub snapshot is laid out. Its
predictions are meaningless: it only shows the pipeline working end to end.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convert_hf import open_clip_vocabulary  # noqa: E402
from make_tokenizer_fixtures import write_hf_folder  # noqa: E402  (the one vocabulary builder)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    import torch
    from transformers import CLIPImageProcessor, GroupViTConfig, GroupViTModel

    out = Path(sys.argv[1]) / "hf"
    if (out / "model.safetensors").exists():
        print(f"{out}: up to date")
        return 0
    gz = open_clip_vocabulary()
    if gz is None:
        print("open-clip-torch is not installed: run scripts/setup.sh", file=sys.stderr)
        return 1
    if out.exists():  # a half-written earlier attempt
        import shutil

        shutil.rmtree(out)
    write_hf_folder(str(gz), str(out))
    torch.manual_seed(0)
    config = GroupViTConfig(text_config={"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1})
    model = GroupViTModel(config).eval()
    with torch.no_grad():  # untrained, but not degenerate: distinct group tokens
        for name, p in model.named_parameters():
            if name.endswith("group_token") or name.endswith("position_embeddings"):
                p.normal_(0, 0.5)
    CLIPImageProcessor().save_pretrained(out)
    model.save_pretrained(out)
    print(f"wrote an untrained demo checkpoint to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
