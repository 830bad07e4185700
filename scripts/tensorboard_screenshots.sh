#!/usr/bin/env bash
# TensorBoard's scalars, histograms and HParams views of a folder of event files, as PNGs:
# starts a local TensorBoard, takes headless-Chromium screenshots, stops it.
#   python -m bnstudy tensorboard results/lr_sweep --out /tmp/tb-lr_sweep
#   scripts/tensorboard_screenshots.sh /tmp/tb-lr_sweep docs/img
# Needs the tb extra (pip install -e ".[tb]") and Chromium (Debian: apt install chromium).
set -euo pipefail
logdir=$1; out=${2:-docs/img}; port=${PORT:-6123}
mkdir -p "$out"
tensorboard --logdir "$logdir" --port "$port" --load_fast=false >/dev/null 2>&1 &
tb=$!
trap 'kill $tb 2>/dev/null || true' EXIT
for _ in $(seq 60); do curl -sf "http://localhost:$port/" >/dev/null && break; sleep 1; done
shot() {  # view (the URL's fragment) and file name
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,900 \
    --virtual-time-budget=20000 --screenshot="$out/$2" "http://localhost:$port/#$1" 2>/dev/null
  echo "wrote $out/$2"
}
shot "scalars&tagFilter=test%2Facc%7Ctrain%2Floss" tensorboard-scalars.png
shot "histograms&tagFilter=activations%2Flayer3.2.norm2" tensorboard-histograms.png
shot "hparams" tensorboard-hparams.png
