#!/usr/bin/env bash
# Trains the offline default model (weights/synthetic-scenes) from scratch with `groupvit train`
# and evaluates it with `groupvit eval`: synthetic captioned scenes (scripts/make_scenes.py), a
# reduced CLIP tokenizer (scripts/make_small_vocab.py), a small GroupViT config, then zero-shot
# colour-only and shape-only segmentation of 500 held-out scenes. Writes the model directory and
# its README.md report (learning curve, scores, time, command).
#
#   scripts/train_default_model.sh [OUT_DIR] [WORK_DIR]   (default: weights/synthetic-scenes, build/scenes)
#   GROUPVIT_TRAIN_THREADS=N     LibTorch threads (default 1: OpenMP barriers spin badly when the
#                                2 cores are shared; the committed model was trained with 1)
#   GROUPVIT_TRAIN_STEPS=N       optimisation steps (default 650)
#   GROUPVIT_REPORT_ONLY=1       skip training: evaluate OUT_DIR and write its report
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="$(realpath -m "${1:-weights/synthetic-scenes}")"
WORK="$(realpath -m "${2:-build/scenes}")"
PY="$ROOT/.venv/bin/python"
BIN="$ROOT/${GROUPVIT_BUILD_DIR:-build}/apps/groupvit"
THREADS="${GROUPVIT_TRAIN_THREADS:-1}"
STEPS="${GROUPVIT_TRAIN_STEPS:-650}"
[[ -x "$BIN" ]] || bash scripts/setup.sh

# --- data: 20,000 training scenes and 500 held-out ones, 36x36 (patch 3: see docs/training-recipe.md)
if [[ ! -f "$WORK/val/classes_shape.txt" ]]; then
  "$PY" scripts/make_scenes.py "$WORK" --train 20000 --val 500 --size 36 --seed 0 --phrases objects
fi
printf '{}\n' > "$WORK/templates.txt"
if [[ ! -f "$WORK/tokenizer/vocab.json" ]]; then
  "$PY" scripts/make_small_vocab.py "$WORK/tokenizer" --text "$WORK/train/captions.jsonl" \
    "$WORK/val/captions.jsonl" "$WORK/val/classes_colour.txt" "$WORK/val/classes_shape.txt" "$WORK/templates.txt"
fi
"$PY" - "$WORK" <<'PYEOF'
import json, sys
work = sys.argv[1]
vocab = json.load(open(f"{work}/tokenizer/vocab.json"))
eos, bos = vocab["<|endoftext|>"], vocab["<|startoftext|>"]
config = {
    "model_type": "groupvit", "projection_dim": 64, "projection_intermediate_dim": 256,
    "text_config": {"vocab_size": len(vocab), "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
                    "num_attention_heads": 4, "max_position_embeddings": 16, "bos_token_id": bos,
                    "eos_token_id": eos, "pad_token_id": eos},
    "vision_config": {"image_size": 36, "patch_size": 3, "hidden_size": 96, "intermediate_size": 384,
                      "num_attention_heads": 4, "depths": [2, 2, 1], "num_hidden_layers": 5,
                      "num_group_tokens": [16, 8, 0], "num_output_groups": [16, 8, 8]},
}
json.dump(config, open(f"{work}/config.json", "w"), indent=1)
PYEOF

# --- training
TRAIN=(train --data "$WORK/train/captions.jsonl" --config "$WORK/config.json" --tokenizer "$WORK/tokenizer"
  --output "$OUT" --steps "$STEPS" --batch-size 64 --lr 2e-3 --warmup-steps 50 --grad-clip 1.0 --phrases 4
  --hflip --seed 0 --threads "$THREADS" --workers 1 --log-every 25 --save-every 100 --save-dtype fp16)
if [[ "${GROUPVIT_REPORT_ONLY:-0}" != 1 ]]; then
  "$BIN" "${TRAIN[@]}"
fi
seconds=$("$PY" -c "import json,sys; print(round(json.loads(open(sys.argv[1]).read().splitlines()[-1])['elapsed_s']))" \
  "$OUT/train_log.jsonl")
cp "$WORK/templates.txt" "$OUT/templates.txt"
rm -f "$OUT/checkpoint.pt"  # optimizer state: 3x the weights, not needed to use the model

# --- zero-shot evaluation on the 500 held-out scenes
EVAL=(--model "$OUT" --input "$WORK/val/images" --templates "$OUT/templates.txt" --whole --short-side 36
  --top-k 3 --bg-thresh 0.95 --quiet --threads "$THREADS")
"$BIN" eval "${EVAL[@]}" --ground-truth "$WORK/val/labels_colour" --labels-file "$WORK/val/classes_colour.txt" \
  --output "$OUT/eval_colour.json"
"$BIN" eval "${EVAL[@]}" --ground-truth "$WORK/val/labels_shape" --labels-file "$WORK/val/classes_shape.txt" \
  --output "$OUT/eval_shape.json"

"$PY" - "$OUT" "$seconds" "$THREADS" "${TRAIN[*]}" "${EVAL[*]}" <<'PYEOF'
import json, os, platform, sys
out, seconds, threads, train_cmd, eval_cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
root = os.getcwd()
rel = lambda s: s.replace(root + "/", "")
log = [json.loads(l) for l in open(f"{out}/train_log.jsonl")]
threads = json.load(open(f"{out}/train_run.json"))["threads"]  # what the run used, not this script's setting
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
lines = ["# weights/synthetic-scenes: the offline default model", "",
         "A small GroupViT trained from scratch by `groupvit train` on synthetic scenes of coloured shapes",
         "(6 colours x 4 shapes on textured grey backgrounds, 36x36 px). `scripts/demo.sh` uses it when the",
         "Hugging Face hub is unreachable. It knows those colours and shapes and nothing else.", "",
         f"Trained with the recipe `scripts/train_default_model.sh` runs (this run: the command below): {seconds} s of training ({len(log) and log[-1]['step']} steps "
         f"of 64 images, {threads} thread(s)) on {cpu}, {os.cpu_count()} cores.", "",
         "**Targets of issue 8 not met** (foreground accuracy >= 0.85, mIoU >= 0.6): see",
         "`docs/training-recipe.md` for the runs tried and what stands in the way.", "",
         "    groupvit " + rel(train_cmd), "", "## Zero-shot segmentation of 500 held-out scenes", "",
         "    groupvit eval " + rel(eval_cmd), "", "| prompts | foreground pixel accuracy | mIoU (background included) | pixel accuracy |",
         "|---|---|---|---|"]
for kind in ("colour", "shape"):
    r = json.load(open(f"{out}/eval_{kind}.json"))
    lines.append(f"| {kind} names only | {r['foreground_accuracy']:.3f} | {r['mean_iou']:.3f} | {r['pixel_accuracy']:.3f} |")
lines += ["", "Per class IoU:", ""]
for kind in ("colour", "shape"):
    r = json.load(open(f"{out}/eval_{kind}.json"))
    lines.append(f"- {kind}: " + ", ".join(f"{c['class']} {c['iou']:.3f}" for c in r["classes"] if c["iou"] is not None))
lines += ["", "## Learning curve (mean over each 25 steps)", "", "| step | loss | image-caption | multi-label | lr | images/s |",
          "|---|---|---|---|---|---|"]
for l in log[::2] + ([log[-1]] if len(log) % 2 == 0 else []):
    lines.append(f"| {l['step']} | {l['loss']:.3f} | {l['contrastive_loss']:.3f} | {l['multi_label_loss']:.3f} | "
                 f"{l['lr']:.2e} | {l['images_per_s']:.1f} |")
open(f"{out}/README.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines[:24]))
PYEOF
