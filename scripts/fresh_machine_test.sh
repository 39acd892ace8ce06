#!/usr/bin/env bash
# The README's promise, checked for real: a minimal Debian 12 (debootstrap's minbase variant:
# only the `required` packages, no compiler, no CUDA toolkit, no Python packages) with nothing
# but a clean clone of this repository runs scripts/demo.sh and scripts/test.sh to the end.
# Too long for CI (everything is downloaded and built from nothing: ~1 h on 2 cores); run it
# after changing what setup.sh installs. Needs root (debootstrap, chroot, mounts).
#
#   scripts/fresh_machine_test.sh [WORK_DIR]      (default: /tmp/groupvit-fresh-machine)
#   GROUPVIT_FRESH_STEPS="demo test"              which of the two commands to run
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(realpath -m "${1:-/tmp/groupvit-fresh-machine}")"
STEPS="${GROUPVIT_FRESH_STEPS-demo test}"
[[ $(id -u) -eq 0 ]] || { echo "fresh_machine_test.sh: needs root (debootstrap, chroot)" >&2; exit 2; }
say() { printf '[fresh] %s\n' "$*"; }

if ! command -v debootstrap > /dev/null; then
  say "installing debootstrap (only for this test)"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
fi
CHROOT="$WORK/root"
if [[ ! -f "$CHROOT/.debootstrap-complete" ]]; then
  rm -rf "$CHROOT" && mkdir -p "$CHROOT"
  say "debootstrap --variant=minbase bookworm"
  debootstrap --variant=minbase bookworm "$CHROOT" http://deb.debian.org/debian > "$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log"; exit 1; }
  # The security and updates suites, as on any Debian 12 install.
  cat > "$CHROOT/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  touch "$CHROOT/.debootstrap-complete"
fi
# A clean clone of what is committed (not the working tree): what a new user gets.
rm -rf "$CHROOT/groupvit"
git clone -q "$ROOT" "$CHROOT/groupvit"
# git itself is what a user needs to get the repository; the image does not have it. The clone
# is made outside, so nothing else is installed beyond what setup.sh does.
# The network settings of the machine around it, as any machine of this workplace has them: name
# servers, and the certificate authorities its HTTPS egress needs (pip's own bundle lacks them).
cp /etc/resolv.conf "$CHROOT/etc/resolv.conf"
mkdir -p "$CHROOT/etc/ssl/certs"
[[ -f /etc/ssl/certs/ca-certificates.crt ]] && cp /etc/ssl/certs/ca-certificates.crt "$CHROOT/etc/ssl/certs/"
[[ -f /etc/pip.conf ]] && cp /etc/pip.conf "$CHROOT/etc/pip.conf"

mounts=()
cleanup() { for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}" 2>/dev/null || true; done; }
trap cleanup EXIT
for m in proc sys dev dev/pts; do
  mount --bind "/$m" "$CHROOT/$m" && mounts+=("$CHROOT/$m")
done
status=0
for step in $STEPS; do
  say "running scripts/$step.sh in the chroot (log: $WORK/$step.log)"
  t0=$(date +%s)
  if chroot "$CHROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      HOME=/root LANG=C.UTF-8 bash -c "cd /groupvit && bash scripts/$step.sh" > "$WORK/$step.log" 2>&1; then
    say "$step.sh passed in $(( $(date +%s) - t0 )) s"
  else
    say "$step.sh FAILED after $(( $(date +%s) - t0 )) s; last lines:"
    tail -40 "$WORK/$step.log"
    status=1
  fi
done
grep -E "tests passed|tests failed" "$WORK/test.log" 2>/dev/null || true
exit $status
