#!/usr/bin/env python3
"""Convert a Hugging Face GroupViT checkpoint into a groupvit model directory.

    scripts/convert_hf.py SRC OUT_DIR [--dtype fp32|fp16|bf16]

SRC is a local Hugging Face directory (config.json with pytorch_model.bin or
model.safetensors, plus tokenizer and preprocessor files) or a hub id such as
nvidia/groupvit-gcc-yfcc (downloaded only when the hub is reachable).

OUT_DIR receives:
  groupvit_weights.pt      torch.save of a plain {name: tensor} dict, loadable by LibTorch
                           (torch::pickle_load) and by torch.load
  model.safetensors        the same tensors; what groupvit::load_model reads (fastest)
  config.json              the source's config
  tokenizer / preprocessor files found in SRC; where SRC has no vocabulary, the
  OpenAI/open_clip bpe_simple_vocab_16e6.txt.gz from the open-clip-torch package

Every tensor is checked against the model that config.json describes (names, shapes,
floating dtypes) before anything is written; files are written to temporaries and renamed,
so an interrupted run never leaves a half-written directory entry.
"""
import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

WEIGHTS_FILE = "groupvit_weights.pt"
SAFETENSORS_FILE = "model.safetensors"
TOKENIZER_FILES = ["vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
PREPROCESSOR_FILES = ["preprocessor_config.json"]
# Present in older checkpoints; the reference regenerates it (non-persistent buffer).
IGNORED_KEYS = {"text_model.embeddings.position_ids"}


class ConversionError(Exception):
    pass


def resolve_source(src: str) -> Path:
    path = Path(src)
    if path.is_dir():
        return path
    if path.exists():
        raise ConversionError(f"{src}: expected a directory, got a file")
    if src.count("/") != 1 or src.startswith(("/", ".")):
        raise ConversionError(f"{src}: no such directory (and not a hub id like owner/name)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(src, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.bin"]))
    except Exception as exc:  # no network here is the common case
        raise ConversionError(
            f"{src}: not a local directory and the hub could not be reached ({type(exc).__name__}). "
            "Download the checkpoint elsewhere and pass its directory."
        ) from None


def read_state_dict(src: Path) -> tuple[dict, str]:
    import torch

    safetensors_path = src / "model.safetensors"
    bin_path = src / "pytorch_model.bin"
    if safetensors_path.exists():
        from safetensors.torch import load_file

        try:
            return load_file(str(safetensors_path)), str(safetensors_path)
        except Exception as exc:
            raise ConversionError(f"{safetensors_path}: cannot read: {exc}") from None
    if bin_path.exists():
        try:
            state = torch.load(str(bin_path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConversionError(f"{bin_path}: cannot read: {exc}") from None
        if not isinstance(state, dict):
            raise ConversionError(f"{bin_path}: expected a state dict, got {type(state).__name__}")
        return state, str(bin_path)
    raise ConversionError(f"{src}: no model.safetensors or pytorch_model.bin")


def expected_tensors(config_path: Path) -> dict:
    """Names, shapes and dtypes of the reference model's state dict, built without memory."""
    import torch
    from transformers import GroupViTConfig, GroupViTModel

    try:
        config = GroupViTConfig.from_json_file(str(config_path))
    except Exception as exc:
        raise ConversionError(f"{config_path}: invalid GroupViT config: {exc}") from None
    with torch.device("meta"):
        model = GroupViTModel(config)
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def check_tensors(state: dict, expected: dict, source: str) -> None:
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected and k not in IGNORED_KEYS]
    wrong = []
    for name, tensor in state.items():
        if name not in expected:
            continue
        shape, dtype = expected[name]
        if tuple(tensor.shape) != shape:
            wrong.append(f"{name}: shape {tuple(tensor.shape)}, expected {shape}")
        elif tensor.is_floating_point() != dtype.is_floating_point:
            wrong.append(f"{name}: dtype {tensor.dtype}, expected {dtype}")
    if missing or unexpected or wrong:
        lines = [f"{source}: the weights do not fit config.json"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape or dtype", wrong)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else ""))
        raise ConversionError("\n".join(lines))


def atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def open_clip_vocabulary() -> Path | None:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bpe_simple_vocab_16e6.txt.gz"
        if candidate.exists():
            return candidate
    return None


def convert(src_arg: str, out_dir: Path, dtype_name: str) -> dict:
    import torch

    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    src = resolve_source(src_arg)
    config_path = src / "config.json"
    if not config_path.exists():
        raise ConversionError(f"{src}: no config.json")
    state, weights_source = read_state_dict(src)
    check_tensors(state, expected_tensors(config_path), weights_source)

    target = dtypes[dtype_name]
    tensors = {}
    for name, tensor in state.items():
        if name in IGNORED_KEYS:
            continue
        tensor = tensor.detach().to("cpu").contiguous()
        if tensor.is_floating_point():
            tensor = tensor.to(target)
        tensors[name] = tensor.clone()  # own storage: no views into a shared buffer

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / WEIGHTS_FILE, lambda tmp: torch.save(tensors, tmp))
    # Read back and compare, so a bad disk or a serialisation surprise is caught here.
    written = torch.load(str(out_dir / WEIGHTS_FILE), map_location="cpu", weights_only=True)
    if written.keys() != tensors.keys() or any(not torch.equal(written[k], tensors[k]) for k in tensors):
        raise ConversionError(f"{out_dir / WEIGHTS_FILE}: read-back differs from what was written")
    # The same tensors as safetensors: the C++ loader reads it straight into the parameters
    # (fast, no second copy in memory); the archive above serves torch::pickle_load users.
    from safetensors.torch import load_file, save_file

    atomic_write(out_dir / SAFETENSORS_FILE, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    written = load_file(str(out_dir / SAFETENSORS_FILE))
    if written.keys() != tensors.keys() or any(not torch.equal(written[k], tensors[k]) for k in tensors):
        raise ConversionError(f"{out_dir / SAFETENSORS_FILE}: read-back differs from what was written")

    copied = []
    for name in ["config.json"] + TOKENIZER_FILES + PREPROCESSOR_FILES:
        if (src / name).exists():
            atomic_write(out_dir / name, lambda tmp, name=name: shutil.copyfile(src / name, tmp))
            copied.append(name)
    if not ((src / "vocab.json").exists() and (src / "merges.txt").exists()):
        vocab = open_clip_vocabulary()
        if vocab is None:
            print("warning: the source has no tokenizer files and open-clip-torch is not installed; "
                  "the model directory has no vocabulary", file=sys.stderr)
        else:
            atomic_write(out_dir / vocab.name, lambda tmp: shutil.copyfile(vocab, tmp))
            copied.append(vocab.name)
    return {
        "source": str(src),
        "weights": str(out_dir / WEIGHTS_FILE),
        "tensors": len(tensors),
        "parameters": int(sum(t.numel() for k, t in tensors.items() if t.is_floating_point())),
        "dtype": dtype_name,
        "files": copied,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="local Hugging Face directory or hub id")
    parser.add_argument("out_dir", type=Path, help="model directory to write")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32",
                        help="storage dtype of floating tensors (default fp32)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    args = parser.parse_args()
    try:
        summary = convert(args.src, args.out_dir, args.dtype)
    except ConversionError as exc:
        print(f"convert_hf: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {summary['tensors']} tensors ({summary['parameters']:,} values, {summary['dtype']}) "
              f"and {', '.join(summary['files'])} to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
