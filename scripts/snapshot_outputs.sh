#!/usr/bin/env bash
# Runs every user-facing command of a groupvit binary on the test fixtures and keeps what it
# writes, so that a refactoring can be checked byte for byte:
#   scripts/snapshot_outputs.sh BINARY OUT_DIR      (after ctest has built build/test/fixtures/)
#   diff -r OUT_BEFORE OUT_AFTER
# Timings and absolute paths are stripped from the JSON it keeps (they differ between any two runs).
# A developer's tool, not a test: the tests assert behaviour against the references; this shows that a
# change which should change nothing changed nothing.
set -euo pipefail
bin=$(realpath "$1")
out=$(realpath -m "$2")
root=$(cd "$(dirname "$0")/.." && pwd)
fix=${GROUPVIT_FIXTURES:-$root/build/test/fixtures}
scenes=${GROUPVIT_SCENES:-$root/build/test/train_work/eval/scenes}
model=$fix/cli/model
images=$fix/cli/images
[[ -d $model && -d $scenes ]] || { echo "snapshot_outputs.sh: run ctest first (needs $model and $scenes)" >&2; exit 2; }
rm -rf "$out"
mkdir -p "$out"
cd "$out"
export OMP_NUM_THREADS=1
strip_volatile() {  # stdin JSON (or JSON lines) -> the same without timings and paths
  python3 -c '
import json, sys
VOLATILE = {"seconds", "elapsed_s", "images_per_s", "wall_s", "time_s", "started", "finished", "duration_s",
            "throughput", "ms", "load_seconds", "model_seconds", "per_image_ms"}
def clean(x):
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items() if k not in VOLATILE and not k.endswith("_seconds") and not k.endswith("_ms")}
    if isinstance(x, list):
        return [clean(v) for v in x]
    if isinstance(x, str):
        return x.replace(sys.argv[1], "<out>").replace(sys.argv[2], "<root>")
    return x
text = sys.stdin.read()
try:
    print(json.dumps(clean(json.loads(text)), indent=1, sort_keys=True))
except json.JSONDecodeError:
    for line in text.splitlines():
        print(json.dumps(clean(json.loads(line)), sort_keys=True) if line.strip() else line)
' "$out" "$root"
}
run_json() {  # NAME ARGS... : the command's --json stdout, cleaned
  local name=$1; shift
  "$bin" "$@" --json | strip_volatile >"$name.json"
}

"$bin" --version >version.txt
run_json info info --model "$model"
run_json tokenize tokenize --model "$model" --text "a photo of a cat" --text "Hello, World!  déjà vu"
"$bin" similarity --model "$model" --image "$images/astronaut.jpg" --image "$images/chelsea.png" \
  --text "a photo of a cat" --text "a photo of an astronaut" >similarity.txt
run_json similarity similarity --model "$model" --image "$images/astronaut.jpg" --image "$images/chelsea.png" \
  --text "a photo of a cat" --text "a photo of an astronaut"
"$bin" embed --model "$model" --image "$images" --text cat --text dog --output embed.json >/dev/null
"$bin" embed --model "$model" --image "$images" --text cat --text dog --normalize --output embed.npy >/dev/null
for mode in nvlabs hf; do
  "$bin" segment --model "$model" --mode $mode --input "$images" --output seg-$mode --labels cat,dog,person \
    --templates subset --save-groups --save-logits --overlay-format png --quiet --json | strip_volatile >seg-$mode.stdout.json
  strip_volatile <seg-$mode/results.jsonl >seg-$mode/results.jsonl.clean && mv seg-$mode/results.jsonl.clean seg-$mode/results.jsonl
  for f in seg-$mode/*.json; do [[ -f $f ]] && { strip_volatile <"$f" >"$f.clean" && mv "$f.clean" "$f"; }; done
done
opts=(--templates "$scenes/val/classes_colour.txt" --whole --short-side 32 --bg-thresh 0.5)
"$bin" train --data "$scenes/train/captions.jsonl" --config "$scenes/config.json" --tokenizer "$scenes/tokenizer" \
  --output trained --steps 6 --batch-size 8 --lr 3e-3 --warmup-steps 2 --phrases 2 --threads 1 --workers 2 \
  --log-every 2 --hflip --seed 7 --quiet >/dev/null
run_json eval eval --model trained --images "$scenes/val/images" --labels "$scenes/val/labels_colour" \
  --classes "$scenes/val/classes_colour.txt" "${opts[@]}" --quiet
# Cleaned only now: eval checks the model directory against its checksums.sha256.
for f in trained/*.json trained/*.jsonl; do [[ -f $f ]] && { strip_volatile <"$f" >"$f.clean" && mv "$f.clean" "$f"; }; done
# Lock files name the writer's pid; checkpoint.pt (the optimiser state for --resume) differs between
# any two runs of the same binary, so only its presence is kept.
find . -name .groupvit.lock -delete
rm trained/checkpoint.pt && sed -i '/ checkpoint.pt$/d' trained/checksums.sha256
echo "snapshot in $out: $(find . -type f | wc -l) files"
