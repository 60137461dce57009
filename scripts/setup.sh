# Sourced by scripts/demo and scripts/test: installs what Nommer needs on a fresh
# Debian machine (FFmpeg, Python's venv module, the Rust toolchain's components) and
# sets the shared build directory. The local AWS emulator (moto) is installed by the
# `nommer` binary itself into .nommer/venv on first use.
set -euo pipefail

NOMMER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export NOMMER_HOME="$NOMMER_ROOT"
# one persistent target dir for your builds and CI's, so both build incrementally
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nommer/target}"
export NOMMER_BIN_DIR="$CARGO_TARGET_DIR/debug"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $* (install sudo or run as root)" >&2; return 1; fi
}

apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
  say "installing FFmpeg (apt)"
  apt_install ffmpeg
fi
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  say "installing Python's venv module (apt)"
  apt_install python3-venv
fi
# the FFmpeg with libvmaf that workers score quality with (Debian's has none): PyPI's
# static build, pinned by hash (scripts/second-ffmpeg)
if [ -z "${NOMMER_SCORE_FFMPEG:-}" ]; then
  NOMMER_SCORE_FFMPEG="$(bash "$NOMMER_ROOT/scripts/second-ffmpeg")"
  export NOMMER_SCORE_FFMPEG
fi
if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install Rust with rustup (https://rustup.rs), then run this again" >&2
  exit 1
fi
