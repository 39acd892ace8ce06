#!/usr/bin/env bash
# Sets up and builds groupvit if needed, then runs the main jobs on real photos: model info,
# tokenization, image-text similarity and zero-shot segmentation.
#
# The pretrained nvidia/groupvit-gcc-yfcc is converted when the Hugging Face hub is reachable.
# Where it is not (as on machines without network), the demo uses the small model committed in
# weights/synthetic-scenes: trained from scratch by `groupvit train` on synthetic scenes of
# coloured shapes (weights/synthetic-scenes/README.md), so it knows colours and shapes, not cats.
# It segments generated scenes and a real photo with colour names, and scores held-out scenes.
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
  MODEL="$ROOT/weights/synthetic-scenes"
  echo "== The Hugging Face hub is not reachable from this machine: using the offline default model"
  echo "== $MODEL, a small GroupViT trained here from scratch on synthetic scenes of coloured shapes"
  echo "== (see its README.md). It knows 6 colours and 4 shapes, nothing else."
  WHICH="weights/synthetic-scenes (trained on synthetic scenes)"
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

if ((hub_ok)); then
  TEXTS=("a photo of a cat" "a photo of an astronaut" "a photo of a cup of coffee")
  LABELS="cat,person,cup,rocket,plant"
  SEG_OPTS=()
  IMAGES=("$OUT/chelsea.png" "$OUT/astronaut.png" "$OUT/coffee.png")
else
  # Held-out scenes from the generator (a different seed from the training data), at the model's size.
  "$PY" scripts/make_scenes.py "$OUT/scenes" --train 0 --val 100 --size 36 --seed 12345 | tail -n 1
  TEXTS=(red green blue yellow purple cyan)
  LABELS="red,green,blue,yellow,purple,cyan"
  SEG_OPTS=(--templates "$MODEL/templates.txt" --whole --short-side 36 --top-k 3 --bg-thresh 0.95)
  IMAGES=("$OUT/scenes/val/images/000000.png" "$OUT/scenes/val/images/000001.png" "$OUT/chelsea.png")
fi
echo
echo "== groupvit similarity   [model: $WHICH]"
"$BIN" similarity --model "$MODEL" --input "${IMAGES[@]}" --text "${TEXTS[@]}"
"$BIN" similarity --model "$MODEL" --input "${IMAGES[0]}" --text "${TEXTS[@]}" --json > "$OUT/similarity.json"
echo
echo "== groupvit classify   [model: $WHICH]"
"$BIN" classify -m "$MODEL" -i "${IMAGES[@]}" --labels "$LABELS" --top-k 3
echo
echo "== groupvit segment   [model: $WHICH]"
rm -rf "$OUT/photos" && mkdir -p "$OUT/photos"
cp "${IMAGES[@]}" "$OUT/photos/"
"$BIN" segment --model "$MODEL" --input "$OUT/photos" --output "$OUT/segment" --labels "$LABELS" "${SEG_OPTS[@]}" \
  --overlay-format png --save-groups --json
echo "first result line:"
head -n 1 "$OUT/segment/results.jsonl"
if ((!hub_ok)); then
  echo
  echo "== groupvit eval: zero-shot colour segmentation of 100 held-out scenes   [model: $WHICH]"
  "$BIN" eval --model "$MODEL" --input "$OUT/scenes/val/images" --ground-truth "$OUT/scenes/val/labels_colour" \
    --labels-file "$OUT/scenes/val/classes_colour.txt" "${SEG_OPTS[@]}" --quiet
fi
echo
echo "== groupvit serve: the demo page and JSON API   [model: $WHICH]"
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$BIN" serve --model "$MODEL" --port "$PORT" 2> "$OUT/serve.log" &
SERVE_PID=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null 2>&1 && break
  sleep 0.2
done
echo "open http://127.0.0.1:$PORT/ in a browser (drop an image, type labels); or from a script:"
echo "  curl -F image=@$OUT/chelsea.png -F labels='$LABELS' http://127.0.0.1:$PORT/v1/segment"
curl -sf -F "image=@$OUT/chelsea.png" -F "labels=$LABELS" "http://127.0.0.1:$PORT/v1/segment" |
  "$PY" -c 'import json, sys; a = json.load(sys.stdin); print("answer:", {k: a[k] for k in ("width", "height", "labels", "pixel_share")})'
kill -TERM "$SERVE_PID" && wait "$SERVE_PID" && echo "server stopped (SIGTERM, exit 0)"
echo
echo "== files written to $OUT"
ls -l "$OUT" "$OUT/segment"
