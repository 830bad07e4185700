#!/usr/bin/env bash
# The first screen of a report.html as a PNG, as a reader sees it (headless Chromium; Debian: apt install chromium).
#   scripts/report_screenshot.sh results/norm_batch/report.html docs/img/report-first-screen.png
set -euo pipefail
html=$(realpath "$1"); out=$2
mkdir -p "$(dirname "$out")"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,900 \
  --screenshot="$out" "file://$html" 2>/dev/null
echo "wrote $out"
