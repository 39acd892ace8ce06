#!/usr/bin/env python3
"""Benchmark of the reference (Hugging Face transformers, eager, and torch.compile where it
works): the same rows, inputs, weights and thread count as bench/bench_groupvit.cpp. Prints JSON.

    bench/bench_reference.py --model HF_DIR [--threads N] [--reps R] [--warmup W] [--compile]
                             [--profile image_fp32_b1|image_fp32_b32] [--image-only] [--keep-freed-memory]
                             [--gpu-rows [--device cuda] [--gpu-batch 64] [--gpu-dtypes fp16,bf16]]
--profile prints each operator's self CPU time over the timed runs of one row (torch.profiler),
like bench_groupvit --profile. --keep-freed-memory applies the malloc setting the C++ CLI uses
(groupvit/runtime/allocator.h) to this process after loading, to show what it is worth on each side.
"""
import argparse
import ctypes
import json
import resource
import statistics
import sys
import time

import torch


def time_it(fn, warmup, reps, cuda=False):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"median_s": times[len(times) // 2], "min_s": times[0], "max_s": times[-1], "reps": reps}


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def nvlabs_like_windows(model, image, text_embeds):
    """The reference modules over the sliding windows of a 448x597 image (two 448 crops,
    stride 224), with position interpolation: the model work of NVlabs-style segmentation."""
    vm = model.vision_model
    crops = [image[:, :, :, 0:448], image[:, :, :, 149:597]]
    outs = []
    for crop in crops:
        hidden = vm.embeddings(crop, interpolate_pos_encoding=True)
        enc = vm.encoder(hidden, output_attentions=True, return_dict=True)
        groups = model.visual_projection(vm.layernorm(enc.last_hidden_state)[0])
        groups = groups / groups.norm(dim=-1, keepdim=True)
        from transformers.models.groupvit.modeling_groupvit import get_grouping_from_attentions

        grouping = get_grouping_from_attentions(enc.attentions, crop.shape[2:])
        outs.append((groups @ text_embeds.t()).softmax(-1).t() @ grouping.flatten(2)[0])
    return outs


def keep_freed_memory_for_reuse(limit=1 << 30):
    """What groupvit::keep_freed_memory_for_reuse() does, through glibc's mallopt."""
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return libc.mallopt(m_mmap_threshold, limit) == 1 and libc.mallopt(m_trim_threshold, limit) == 1


GPU_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def gpu_rows(model, tokenizer, args):
    """bench_groupvit's gpu_* rows for transformers eager (and torch.compile with CUDA graphs,
    mode "reduce-overhead", with --compile): image features and segmentation labels of a batch."""
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    tok = tokenizer([f"a photo of a {c}." for c in ["cat", "dog", "person", "car", "tree", "sky"]], padding=True,
                    return_tensors="pt").to(device)
    rows = {}
    for tag in args.gpu_dtypes.split(","):
        m = model.to(device, GPU_DTYPES[tag])
        pixels = torch.randn(args.gpu_batch, 3, 224, 224, device=device, dtype=GPU_DTYPES[tag])
        fns = {f"gpu_image_{tag}": lambda: m.get_image_features(pixel_values=pixels),
               f"gpu_seg_hf_{tag}": lambda: m(input_ids=tok.input_ids, attention_mask=tok.attention_mask,
                                              pixel_values=pixels, output_segmentation=True
                                              ).segmentation_logits.argmax(1)}
        if args.compile and tag == args.gpu_dtypes.split(",")[0]:  # one compile: they take minutes
            compiled = torch.compile(m.get_image_features, mode="reduce-overhead")
            fns[f"compiled_gpu_image_{tag}"] = lambda: compiled(pixel_values=pixels)
        for name, fn in fns.items():
            try:
                r = time_it(fn, args.warmup + (2 if name.startswith("compiled") else 0), args.reps, cuda)
            except Exception as exc:  # report, don't fail the benchmark
                rows[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
                continue
            r["batch"] = args.gpu_batch
            r["images_per_s"] = args.gpu_batch / r["median_s"]
            rows[name] = r
    model.to("cpu", torch.float32)
    return rows


def profile_ops(model, batch, warmup, reps):
    pixels = torch.randn(batch, 3, 224, 224)
    with torch.inference_mode():
        for _ in range(warmup):
            model.get_image_features(pixel_values=pixels)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            for _ in range(reps):
                model.get_image_features(pixel_values=pixels)
            wall = time.perf_counter() - t0
    ops = {e.key: {"self_s": e.self_cpu_time_total * 1e-6, "calls": e.count} for e in prof.key_averages()}
    return {"reps": reps, "wall_s": wall, "ops": ops}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the image features")
    parser.add_argument("--only-load", action="store_true")
    parser.add_argument("--profile", choices=["image_fp32_b1", "image_fp32_b32"])
    parser.add_argument("--image-only", action="store_true", help="only the image rows at batch 1 and 32")
    parser.add_argument("--gpu-rows", action="store_true", help="only the gpu_* rows (see bench_groupvit)")
    parser.add_argument("--device", default="cuda", help="device of the --gpu-rows")
    parser.add_argument("--gpu-batch", type=int, default=64)
    parser.add_argument("--gpu-dtypes", default="fp16,bf16", help="comma-separated: fp16, bf16, fp32")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="after loading, keep freed memory for reuse as the C++ CLI does")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import CLIPTokenizer, GroupViTModel

    out = {"impl": "transformers eager", "threads": torch.get_num_threads(), "torch": torch.__version__}
    rss_before = peak_rss_mb()
    t0 = time.perf_counter()
    model = GroupViTModel.from_pretrained(args.model).eval()
    out["load_s"] = time.perf_counter() - t0
    out["load_peak_rss_mb"] = peak_rss_mb()
    out["rss_before_load_mb"] = rss_before
    if args.only_load:
        print(json.dumps(out, indent=1))
        return 0

    if args.keep_freed_memory:
        out["keep_freed_memory_for_reuse"] = keep_freed_memory_for_reuse()
    torch.manual_seed(0)
    if args.gpu_rows:
        with torch.inference_mode():
            out["rows"] = gpu_rows(model, CLIPTokenizer.from_pretrained(args.model), args)
        out["device"] = args.device
        if args.device.startswith("cuda"):
            out["gpu"] = torch.cuda.get_device_name()
        print(json.dumps(out, indent=1))
        return 0
    if args.profile:
        out["profile"] = profile_ops(model, 1 if args.profile == "image_fp32_b1" else 32, args.warmup, args.reps)
        out["profile"]["row"] = args.profile
        print(json.dumps(out, indent=1))
        return 0
    rows = {}
    with torch.inference_mode():
        for batch in (1, 32) if args.image_only else (1, 8, 32):
            pixels = torch.randn(batch, 3, 224, 224)
            r = time_it(lambda: model.get_image_features(pixel_values=pixels), args.warmup, args.reps)
            r["images_per_s"] = batch / r["median_s"]
            rows[f"image_fp32_b{batch}"] = r
    if args.image_only:
        out["rows"] = rows
        print(json.dumps(out, indent=1))
        return 0
    with torch.inference_mode():
        tokenizer = CLIPTokenizer.from_pretrained(args.model)
        labels = ["cat", "dog", "person", "car", "tree", "sky", "road", "grass"]
        for n in (1, 80):
            tok = tokenizer([f"a photo of a {labels[i % len(labels)]}." for i in range(n)], padding=True,
                            return_tensors="pt")
            rows[f"text_fp32_{n}"] = time_it(
                lambda: model.get_text_features(input_ids=tok.input_ids, attention_mask=tok.attention_mask),
                args.warmup, args.reps)
        tok = tokenizer([f"a photo of a {c}." for c in ["cat", "dog", "person", "car", "tree", "sky"]], padding=True,
                        return_tensors="pt")
        pixels = torch.randn(1, 3, 224, 224)
        rows["seg_hf_224"] = time_it(
            lambda: model(input_ids=tok.input_ids, attention_mask=tok.attention_mask, pixel_values=pixels,
                          output_segmentation=True).segmentation_logits.argmax(1), args.warmup, args.reps)
        text = model.get_text_features(input_ids=tok.input_ids, attention_mask=tok.attention_mask)
        text = text.pooler_output if hasattr(text, "pooler_output") else text
        text = text / text.norm(dim=-1, keepdim=True)
        image = torch.randn(1, 3, 448, 597)
        rows["seg_nvlabs_640x480"] = time_it(lambda: nvlabs_like_windows(model, image, text), args.warmup, args.reps)
    if args.compile:
        try:
            compiled = torch.compile(model.get_image_features)
            with torch.inference_mode():
                for batch in (1, 32):
                    pixels = torch.randn(batch, 3, 224, 224)
                    r = time_it(lambda: compiled(pixel_values=pixels), args.warmup + 1, args.reps)
                    r["images_per_s"] = batch / r["median_s"]
                    rows[f"compiled_image_fp32_b{batch}"] = r
        except Exception as exc:  # report, don't fail the benchmark
            out["compile_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    out["rows"] = rows
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
