#!/usr/bin/env python3
"""Turns the operator profiles of scripts/bench.sh --profile (bench_groupvit --profile and
bench_reference.py --profile, same rows, weights and threads) into docs/profile.md: where the time of
one image-feature forward goes, by operator kind, for ours and the reference side by side, and what
that bounds.

    bench/profile_report.py WORK_DIR OUT_MD
WORK_DIR holds prof_cpp_<row>.json and prof_ref_<row>.json, and cpp.json (a bench_groupvit run with the
gemm_fp32 row: the machine's rate, the image FLOPs, threads and torch version).
"""
import json
import pathlib
import sys

from report import machine_of

# Operator kinds, first match wins. Self times: a wrapper such as aten::linear or aten::matmul only
# counts its own dispatch, the kernels it calls count under their own names.
KINDS = [
    # mkldnn::_linear_pointwise: our batched Linear layers on oneDNN (groupvit/model/layers.h), GELU fused in.
    ("matrix multiply (addmm, mm, bmm, convolution, oneDNN linear)",
     ("aten::addmm", "aten::mm", "aten::bmm", "aten::mkldnn_convolution", "aten::convolution", "aten::_convolution",
      "mkldnn::_linear_pointwise")),
    ("fused attention kernel", ("aten::_scaled_dot_product_flash_attention_for_cpu",)),
    ("softmax", ("aten::_softmax", "aten::softmax", "aten::_log_softmax")),
    ("layer norm", ("aten::native_layer_norm", "aten::layer_norm")),
    ("GELU", ("aten::gelu",)),
    ("copies and concatenation", ("aten::copy_", "aten::cat", "aten::clone", "aten::contiguous", "aten::_to_copy")),
    ("element-wise arithmetic", ("aten::add", "aten::add_", "aten::mul", "aten::mul_", "aten::div", "aten::div_",
                                 "aten::sub", "aten::rsub", "aten::neg", "aten::exp", "aten::sum", "aten::mean")),
]
OTHER = "other operators (views, argmax, one-hot, batch norm, ...)"
OUTSIDE = "outside any operator (interpreter, glue, allocation)"


def kind_of(name):
    for kind, names in KINDS:
        if name in names:
            return kind
    return OTHER


def per_forward(profile):
    reps = profile["reps"]
    kinds = {k: 0.0 for k, _ in KINDS}
    kinds[OTHER] = 0.0
    for name, v in profile["ops"].items():
        kinds[kind_of(name)] += v["self_s"] / reps
    wall = profile["wall_s"] / reps
    kinds[OUTSIDE] = max(0.0, wall - sum(kinds.values()))
    return wall, kinds


def top_ops(profile, n=8):
    reps = profile["reps"]
    ops = sorted(profile["ops"].items(), key=lambda kv: -kv[1]["self_s"])[:n]
    return [(name, v["self_s"] / reps * 1e3, v["calls"] // reps) for name, v in ops]


def main():
    work, out_md = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    table = json.loads((work / "cpp.json").read_text())
    gemm_gflops = table["rows"]["gemm_fp32"]["gflops"]
    flops = table["image_flops_per_image"]
    machine = machine_of(table)
    lines = ["# Where the time goes: operator profiles of the image tower", "",
              "Written by `scripts/bench.sh --profile`: the LibTorch profiler's CPU events over the timed runs of",
              "`get_image_features` (C++: `bench_groupvit --profile`; reference: `torch.profiler` around",
              "transformers eager), same seeded full-size checkpoint, inputs and thread count. Self time per",
              "operator, milliseconds per forward; \"outside any operator\" is wall time minus all operators' self",
              "time (Python interpreter for the reference, our C++ glue for ours). Ours runs with",
              "`keep_freed_memory_for_reuse()` as the CLI does, the reference as users run it: the page faults of",
              "freshly mapped activations land in the first operator that writes them (copies, GELU, matrix",
              "multiplies); docs/benchmarks.md times both sides with and without that setting.", ""]
    lines += [f"Machine: {machine['cpu']}, {machine['cores']} cores ({', '.join(machine['simd'])}), "
              f"{machine['threads']} threads, torch {machine['torch']}, commit {machine['commit']}.", ""]
    for row in ("image_fp32_b1", "image_fp32_b32"):
        cpp_path, ref_path = work / f"prof_cpp_{row}.json", work / f"prof_ref_{row}.json"
        if not (cpp_path.exists() and ref_path.exists()):
            continue
        cpp = json.loads(cpp_path.read_text())["profile"]
        ref = json.loads(ref_path.read_text())["profile"]
        cw, ck = per_forward(cpp)
        rw, rk = per_forward(ref)
        batch = 1 if row.endswith("b1") else 32
        lines += [f"## {row} (batch {batch}; {cpp['reps']} profiled forwards each)", "",
                  "| operator kind | ours ms | share | reference ms | share |", "|---|---|---|---|---|"]
        for kind in list(ck):
            lines.append(f"| {kind} | {ck[kind] * 1e3:.1f} | {ck[kind] / cw:.0%} | {rk[kind] * 1e3:.1f} | "
                         f"{rk[kind] / rw:.0%} |")
        lines.append(f"| **wall time per forward (profiled)** | **{cw * 1e3:.1f}** | | **{rw * 1e3:.1f}** | |")
        lines.append("")
        mm = KINDS[0][0]
        floor = ck[mm] + ck[KINDS[1][0]]
        lines.append(f"- Matrix multiplies and the attention kernel, (MKL and oneDNN kernels: the reference uses MKL for every Linear, we use whichever of the two was measured faster per shape), take "
                     f"{floor * 1e3:.1f} ms of ours ({floor / cw:.0%}); the reference spends "
                     f"{(rk[mm] + rk[KINDS[1][0]]) * 1e3:.1f} ms in its matrix multiplies and attention products.")
        ref_kernels = rk[mm] + rk[KINDS[1][0]]
        needed = ck["layer norm"] + ck["GELU"] + ck["softmax"]
        lines.append(f"- Bounds on the speed-up over the profiled reference ({rw * 1e3:.1f} ms): with the reference's own "
                     f"kernel time ({ref_kernels * 1e3:.1f} ms) and nothing else, {rw / ref_kernels:.2f}x; with ours "
                     f"({floor * 1e3:.1f} ms) and nothing else, {rw / floor:.2f}x; adding the layer norms, GELUs and "
                     f"softmaxes every implementation needs ({needed * 1e3:.1f} ms in ours), "
                     f"{rw / (floor + needed):.2f}x. Repeated profiles of the same build vary by 10-20% on this "
                     "shared machine, so read these as ranges.")
        rate = flops * batch / ck[mm] / 1e9
        lines.append(f"- Inside the matrix multiplies ours runs at {rate:.0f} GFLOP/s (image-tower FLOPs over matrix "
                     f"multiply time; slightly over-counted, the attention products are in the FLOPs) against "
                     f"the machine's measured {gemm_gflops:.0f} GFLOP/s for 2048x2048 fp32.")
        lines += ["", "Top operators by self time (ms per forward, calls per forward):", "",
                  "| ours | ms | calls | reference | ms | calls |", "|---|---|---|---|---|---|"]
        for (cn, cms, cc), (rn, rms, rc) in zip(top_ops(cpp), top_ops(ref)):
            lines.append(f"| {cn} | {cms:.1f} | {cc} | {rn} | {rms:.1f} | {rc} |")
        lines.append("")
    out_md.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
