#!/usr/bin/env bash
# Run on the build machine before a GPU session: the GPU machine has Python, torch, cmake,
# ninja and nvcc but no Debian -dev packages, so the header-only and small libraries the core
# needs travel as extracted .deb files under .deps/root (git-ignored; name ".deps" in the device
# tool's carry list). Idempotent.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="$ROOT/.deps"
[[ -f "$DEPS/root/.complete-3" ]] && { echo "[gpu_deps] $DEPS/root up to date"; exit 0; }
mkdir -p "$DEPS/debs" && rm -rf "$DEPS/root"
cd "$DEPS/debs"
# libssl-dev + libssl3: SHA-256 (libcrypto) for checksums.sha256.
apt-get download nlohmann-json3-dev catch2 libcli11-dev libutf8proc-dev libutf8proc2 zlib1g-dev libssl-dev libssl3
for deb in *.deb; do dpkg -x "$deb" "$DEPS/root"; done
# The GPU machine has no open-clip-torch: bring its BPE vocabulary for the benchmark model.
"$ROOT/.venv/bin/python" -c "import sys; sys.path.insert(0, '$ROOT/scripts'); from convert_hf import open_clip_vocabulary; print(open_clip_vocabulary())" \
  | xargs -I{} cp {} "$DEPS/root/bpe_simple_vocab_16e6.txt.gz"
# ... and the Hugging Face tokenizer files (vocab.json, merges.txt) for the reference benchmark.
"$ROOT/.venv/bin/python" -c "import sys; sys.path.insert(0, '$ROOT/scripts'); from make_tokenizer_fixtures import write_hf_folder; write_hf_folder('$DEPS/root/bpe_simple_vocab_16e6.txt.gz', '$DEPS/root/clip-tokenizer')"
touch "$DEPS/root/.complete-3"
du -sh "$DEPS/root"
