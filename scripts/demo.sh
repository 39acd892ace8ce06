#!/usr/bin/env bash
# Sets up and builds groupvit if needed, then runs the main jobs on real photos: model info,
# tokenization, image-text similarity and zero-shot segmentation.
#
# The pretrained nvidia/groupvit-gcc-yfcc is converted when the Hugging Face hub is reachable.
# Where it is not (as on machines without network), the demo says so and runs the same
# commands on a seeded random checkpoint in the real Hugging Face layout: UNTRAINED, so its
# numbers only show that the pipeline runs, not what GroupViT predicts.
#
#   scripts/demo.sh [OUT_DIR]      (default: demo-out)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="$(realpath -m "${1:-demo-out}")"
bash scripts/setup.sh
PY="$ROOT/.venv/bin/python"
BIN="$ROOT/${GROUPVIT_BUILD_DIR:-build}/apps/groupvit"
mkdir -p "$OUT"

hub_ok=0
if timeout 20 "$PY" -c "from huggingface_hub import HfApi; HfApi().model_info('nvidia/groupvit-gcc-yfcc')" \
    >/dev/null 2>&1; then
  hub_ok=1
fi
if ((hub_ok)); then
  MODEL="$OUT/groupvit-gcc-yfcc"
  echo "== converting nvidia/groupvit-gcc-yfcc from the Hugging Face hub"
  [[ -f "$MODEL/groupvit_weights.pt" ]] || "$PY" scripts/convert_hf.py nvidia/groupvit-gcc-yfcc "$MODEL"
  WHICH="nvidia/groupvit-gcc-yfcc (pretrained)"
else
  MODEL="$OUT/untrained-demo/model"
  echo "== The Hugging Face hub is not reachable from this machine."
  echo "== Running the same commands on an UNTRAINED, seeded random GroupViT (real checkpoint layout)."
  echo "== Its probabilities are meaningless: they only show the pipeline working end to end."
  "$PY" scripts/make_demo_model.py "$OUT/untrained-demo" 2>&1 | grep -v "it/s" || true
  [[ -f "$MODEL/groupvit_weights.pt" ]] || "$PY" scripts/convert_hf.py "$OUT/untrained-demo/hf" "$MODEL"
  WHICH="untrained seeded random weights (NOT a real prediction)"
fi

# Real photos bundled in the scikit-image wheel.
"$PY" - "$OUT" <<'PYEOF'
import sys, PIL.Image, skimage.data
for name in ("chelsea", "astronaut", "coffee"):
    PIL.Image.fromarray(getattr(skimage.data, name)()).save(f"{sys.argv[1]}/{name}.png")
PYEOF

echo
echo "== groupvit info"
"$BIN" info --model "$MODEL"
echo
echo "== groupvit tokenize"
"$BIN" tokenize --model "$MODEL" --text "a photo of a cat" --json
echo
echo "== groupvit similarity   [model: $WHICH]"
"$BIN" similarity --model "$MODEL" --image "$OUT/chelsea.png" "$OUT/astronaut.png" "$OUT/coffee.png" \
  --text "a photo of a cat" "a photo of an astronaut" "a photo of a cup of coffee"
"$BIN" similarity --model "$MODEL" --image "$OUT/chelsea.png" --text "a photo of a cat" "a photo of a dog" --json \
  > "$OUT/similarity.json"
echo
echo "== groupvit segment   [model: $WHICH]"
mkdir -p "$OUT/photos"
cp "$OUT/chelsea.png" "$OUT/astronaut.png" "$OUT/coffee.png" "$OUT/photos/"
"$BIN" segment --model "$MODEL" --input "$OUT/photos" --output "$OUT/segment" \
  --labels "cat,person,cup,rocket,plant" --save-groups --json
echo "first result line:"
head -n 1 "$OUT/segment/results.jsonl"
if ((!hub_ok)); then
  echo "(UNTRAINED model: these label maps are NOT a real prediction; they show the pipeline only)"
fi
echo
echo "== files written to $OUT"
ls -l "$OUT" "$OUT/segment"
