#!/usr/bin/env python3
"""One peer engine's rows of the peer benchmark, in this process: transformers eager, ONNX Runtime, or
OpenVINO (dynamic or static shapes) on the same Hugging Face checkpoint, inputs and thread count as
bench/bench_groupvit.cpp. Prints JSON. bench/peers.py runs it once per engine and round.

    bench/bench_peers.py --engine transformers|onnxruntime|openvino|openvino-static --model HF_DIR
                         --cache DIR [--threads N] [--reps R] [--warmup W] [--rows image_fp32_b1,...]

ONNX Runtime runs the ONNX files torch.onnx.export makes of get_image_features / get_text_features
(dynamic batch and sequence); OpenVINO runs ov.convert_model of the same two modules (saved as IR).
Both are made once into --cache, and checked there against transformers (the run fails if they
disagree). Rows: image_{fp32,bf16,default}_b{1,8,32}, text_fp32_{1,80}; "default" is the engine's own
choice of precision (OpenVINO picks bf16 by itself on CPUs with AMX), bf16 asks for bf16 (ONNX Runtime
has no bf16 CPU kernels: such rows come back with a "skipped" reason).
"""
import argparse
import contextlib
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

LABELS = ["cat", "dog", "person", "car", "tree", "sky", "road", "grass"]  # as bench_groupvit.cpp
DEFAULT_ROWS = "image_fp32_b1,image_fp32_b8,image_fp32_b32,text_fp32_1,text_fp32_80"


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_it(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"median_s": times[len(times) // 2], "min_s": times[0], "max_s": times[-1], "reps": reps}


def parse_row(name):
    """('image', 'fp32', 32) from image_fp32_b32; ('text', 'fp32', 80) from text_fp32_80."""
    kind, precision, size = name.split("_")
    return kind, precision, int(size.lstrip("b"))


def prompts(n):
    return [f"a photo of a {LABELS[i % len(LABELS)]}." for i in range(n)]


def feature_modules(model):
    """get_image_features and get_text_features as modules of tensors in, tensor out (for the exporters)."""
    import torch

    def tensor(out):
        return out if torch.is_tensor(out) else out.pooler_output

    class ImageFeatures(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return tensor(self.model.get_image_features(pixel_values=pixel_values))

    class TextFeatures(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return tensor(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))

    # eval(): the exporter restores a module's mode after tracing, and a new Module is in training mode,
    # which would put GroupViT into training (Gumbel noise) behind it.
    return ImageFeatures().eval(), TextFeatures().eval()


def load_reference(model_dir):
    from transformers import GroupViTModel

    return GroupViTModel.from_pretrained(model_dir).eval()


def load_tokenizer(model_dir):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(model_dir)


def randn(*shape):
    return np.random.default_rng(0).standard_normal(shape, dtype=np.float32)


def example_inputs(tokenizer, batch=2, texts=3, suffix=""):
    import torch

    torch.manual_seed(batch)
    tok = tokenizer([p + suffix for p in prompts(texts)], padding=True, return_tensors="pt")
    return torch.randn(batch, 3, 224, 224), tok.input_ids, tok.attention_mask


# The export is traced at the first; the second (another batch, longer prompts) shows its dynamic axes work.
CHECK_INPUTS = [dict(batch=2, texts=3), dict(batch=5, texts=7, suffix=" in a field at dusk, seen from afar")]


def check_engine(model, tokenizer, run_image, run_text):
    """The engine's features against transformers' at every CHECK_INPUTS; raises past tolerance."""
    import torch

    image_module, text_module = feature_modules(model)
    worst = {}
    for kw in CHECK_INPUTS:
        pixels, ids, mask = example_inputs(tokenizer, **kw)
        with torch.inference_mode():
            ref_image, ref_text = image_module(pixels), text_module(ids, mask)
        for what, ref, got in (("image", ref_image, run_image(pixels.numpy())),
                               ("text", ref_text, run_text(ids.numpy(), mask.numpy()))):
            r = check_against(ref, got, f"{what} ({kw})")
            w = worst.setdefault(what, r)
            w["max_abs_diff"], w["min_cosine"] = max(w["max_abs_diff"], r["max_abs_diff"]), min(w["min_cosine"], r["min_cosine"])
    return worst


def check_against(reference, engine_out, what):
    """Max |difference| and min cosine of an engine's features against transformers'; raises past tolerance."""
    ref = reference.detach().numpy().astype(np.float64)
    got = np.asarray(engine_out, dtype=np.float64)
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    res = {"max_abs_diff": float(np.abs(ref - got).max()), "min_cosine": float(cos.min())}
    if not (res["max_abs_diff"] < 1e-3 and res["min_cosine"] > 0.99999):
        raise SystemExit(f"bench_peers: the {what} export disagrees with transformers: {res}")
    return res


def cached_export(name, model, tokenizer, cache, export):
    """The check of an engine's export, made once: export(model, tokenizer, cache, image_module, text_module,
    pixels, ids, mask) writes its files into cache and returns the check, kept in cache/NAME.json."""
    done = cache / f"{name}.json"
    if done.exists():
        return json.loads(done.read_text())
    cache.mkdir(parents=True, exist_ok=True)
    check = export(model, tokenizer, cache, *feature_modules(model), *example_inputs(tokenizer, **CHECK_INPUTS[0]))
    done.write_text(json.dumps(check))
    return check


def make_onnx(model, tokenizer, cache):
    """image.onnx and text.onnx in cache (once), checked against transformers with ONNX Runtime."""
    return cached_export("onnx", model, tokenizer, cache, export_onnx)


def export_onnx(model, tokenizer, cache, image_module, text_module, pixels, ids, mask):
    import onnxruntime as ort
    import torch

    # The TorchScript exporter (dynamo=False): the one that exports transformers' GroupViT as it is,
    # with dynamic axes; opset 17 has LayerNormalization.
    torch.onnx.export(image_module, (pixels,), str(cache / "image.onnx"), input_names=["pixel_values"],
                      output_names=["image_embeds"], dynamic_axes={"pixel_values": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    torch.onnx.export(text_module, (ids, mask), str(cache / "text.onnx"),
                      input_names=["input_ids", "attention_mask"], output_names=["text_embeds"],
                      dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}},
                      opset_version=17, dynamo=False)
    image = ort.InferenceSession(str(cache / "image.onnx"), providers=["CPUExecutionProvider"])
    text = ort.InferenceSession(str(cache / "text.onnx"), providers=["CPUExecutionProvider"])
    return check_engine(model, tokenizer, lambda px: image.run(None, {"pixel_values": px})[0],
                        lambda i, m: text.run(None, {"input_ids": i, "attention_mask": m})[0])


def make_openvino(model, tokenizer, cache):
    """image.xml and text.xml (OpenVINO IR) of ov.convert_model in cache (once), checked against transformers."""
    return cached_export("openvino", model, tokenizer, cache, export_openvino)


def export_openvino(model, tokenizer, cache, image_module, text_module, pixels, ids, mask):
    import openvino as ov

    image = ov.convert_model(image_module, example_input=(pixels,), input=[ov.PartialShape([-1, 3, 224, 224])])
    text = ov.convert_model(text_module, example_input=(ids, mask),
                            input=[ov.PartialShape([-1, -1]), ov.PartialShape([-1, -1])])
    ov.save_model(image, str(cache / "image.xml"), compress_to_fp16=False)
    ov.save_model(text, str(cache / "text.xml"), compress_to_fp16=False)
    core = ov.Core()
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}
    image_c = core.compile_model(str(cache / "image.xml"), "CPU", f32)
    text_c = core.compile_model(str(cache / "text.xml"), "CPU", f32)
    return check_engine(model, tokenizer, lambda px: image_c([px])[0], lambda i, m: text_c([i, m])[0])


def cpu_has_bf16():
    try:
        flags = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")).split()
    except (OSError, StopIteration):
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class Transformers:
    def __init__(self, model, tokenizer, args):
        import torch

        self.torch, self.model, self.tokenizer = torch, model, tokenizer

    def image(self, precision, batch):
        torch = self.torch
        if precision == "default":
            precision = "fp32"
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
        m = self.model.to(dtype)
        pixels = torch.from_numpy(randn(batch, 3, 224, 224)).to(dtype)
        return lambda: m.get_image_features(pixel_values=pixels), {"precision": precision}

    def text(self, n):
        tok = self.tokenizer(prompts(n), padding=True, return_tensors="pt")
        m = self.model.to(self.torch.float32)
        return lambda: m.get_text_features(input_ids=tok.input_ids, attention_mask=tok.attention_mask), {}


class OnnxRuntime:
    def __init__(self, model, tokenizer, args):
        import onnxruntime as ort

        self.tokenizer = tokenizer
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads or os.cpu_count()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sessions = {k: ort.InferenceSession(str(args.cache / f"{k}.onnx"), opts, providers=["CPUExecutionProvider"])
                         for k in ("image", "text")}
        self.version = ort.__version__

    def image(self, precision, batch):
        if precision == "bf16":
            return None, {"skipped": "ONNX Runtime has no bf16 CPU kernels"}
        pixels = randn(batch, 3, 224, 224)
        s = self.sessions["image"]
        return lambda: s.run(None, {"pixel_values": pixels}), {"precision": "fp32"}

    def text(self, n):
        tok = self.tokenizer(prompts(n), padding=True, return_tensors="np")
        s = self.sessions["text"]
        feed = {"input_ids": tok["input_ids"].astype(np.int64), "attention_mask": tok["attention_mask"].astype(np.int64)}
        return lambda: s.run(None, feed), {}


class OpenVino:
    def __init__(self, model, tokenizer, args, static=False):
        import openvino as ov

        self.ov, self.core, self.tokenizer, self.static, self.threads = ov, ov.Core(), tokenizer, static, args.threads
        self.models = {k: self.core.read_model(str(args.cache / f"{k}.xml")) for k in ("image", "text")}
        self.version = ov.get_version()

    def config(self, precision):
        c = {"PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            c["INFERENCE_NUM_THREADS"] = self.threads
        if precision != "default":
            c["INFERENCE_PRECISION_HINT"] = {"fp32": "f32", "bf16": "bf16"}[precision]
        return c

    def image(self, precision, batch):
        if precision == "bf16" and not cpu_has_bf16():
            return None, {"skipped": "this CPU has no bf16 instructions (OpenVINO would run f32)"}
        model = self.models["image"].clone()
        if self.static:
            model.reshape({model.inputs[0].get_any_name(): self.ov.PartialShape([batch, 3, 224, 224])})
        compiled = self.core.compile_model(model, "CPU", self.config(precision))
        request = compiled.create_infer_request()
        pixels = randn(batch, 3, 224, 224)
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")  # what it runs in, e.g. f32 or bf16
        used = hint.to_string() if hasattr(hint, "to_string") else str(hint)
        return lambda: request.infer([pixels]), {"precision": used}

    def text(self, n):
        tok = self.tokenizer(prompts(n), padding=True, return_tensors="np")
        model = self.models["text"].clone()
        ids, mask = tok["input_ids"].astype(np.int64), tok["attention_mask"].astype(np.int64)
        if self.static:
            model.reshape({model.inputs[0].get_any_name(): self.ov.PartialShape(list(ids.shape)),
                           model.inputs[1].get_any_name(): self.ov.PartialShape(list(mask.shape))})
        request = self.core.compile_model(model, "CPU", self.config("fp32")).create_infer_request()
        return lambda: request.infer([ids, mask]), {}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", required=True, choices=["transformers", "onnxruntime", "openvino", "openvino-static"])
    ap.add_argument("--model", required=True, help="the Hugging Face checkpoint directory")
    ap.add_argument("--cache", required=True, type=Path, help="where the exported models are kept")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rows", default=DEFAULT_ROWS)
    ap.add_argument("--prepare", action="store_true", help="only make and check the exports, then exit")
    args = ap.parse_args()
    out = {"impl": args.engine, "threads": args.threads or os.cpu_count()}
    tokenizer = load_tokenizer(args.model)
    if args.prepare:
        import torch

        model = load_reference(args.model)
        with torch.inference_mode():
            make = make_onnx if args.engine == "onnxruntime" else make_openvino
            out["export_check"] = make(model, tokenizer, args.cache)
        print(json.dumps(out, indent=1))
        return 0
    # The timed process holds only what a user's process of that engine would: the peers read their
    # exported model and never import torch.
    t0 = time.perf_counter()
    if args.engine == "transformers":
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        engine = Transformers(load_reference(args.model), tokenizer, args)
        out["version"] = __import__("transformers").__version__
        ctx = torch.inference_mode()
    else:
        engine = (OnnxRuntime if args.engine == "onnxruntime" else OpenVino)(None, tokenizer, args)
        if args.engine == "openvino-static":
            engine.static = True
        out["version"] = engine.version
        ctx = contextlib.nullcontext()
    out["load_s"] = time.perf_counter() - t0  # transformers: from_pretrained; peers: reading the exported model
    rows = {}
    with ctx:
        for name in filter(None, args.rows.split(",")):
            kind, precision, size = parse_row(name)
            t1 = time.perf_counter()
            fn, info = engine.image(precision, size) if kind == "image" else engine.text(size)
            if fn is None:
                rows[name] = info
                continue
            prepare_s = time.perf_counter() - t1  # OpenVINO: compiling for the row's shape and precision
            r = time_it(fn, args.warmup, args.reps)
            r.update(info, prepare_s=prepare_s)
            if kind == "image":
                r["images_per_s"] = size / r["median_s"]
            rows[name] = r
    out["rows"] = rows
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
