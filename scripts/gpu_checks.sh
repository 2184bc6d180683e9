#!/usr/bin/env bash
# The GPU checks that issues 20 and 24 name, for a lent GPU machine (the device tool).
#
#   bash scripts/gpu_checks.sh demo        # issue 24: the demo, timed as a user meets it,
#                                          # and scored (latentpath evaluate)
#   bash scripts/gpu_checks.sh train       # issue 24: the paper-size skip-rVAE (4 x 256,
#                                          # 70 x 70 windows): windows/s, and the time of
#                                          # 61,654 windows x 300 epochs that follows
#   bash scripts/gpu_checks.sh discovery   # issue 20: the discovery benchmark's two noisiest
#                                          # movies with the GPU's sizes (4 x 256, 300 epochs)
#
# Each part fits one call of at most 10 minutes on an H100; give each its own call. The
# device image holds PyTorch, numpy, scipy, pandas, scikit-image and matplotlib but not
# trackpy, which the tracks need: fetch its wheels here first, where the package
# registries are reachable, and carry them:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl trackpy==0.7 looseversion==1.3.0
#   run(command="bash scripts/gpu_checks.sh demo", carry=[".whl"], timeout_s=600)
#
# QUICK=1 runs every part at toy sizes, to try the script on a CPU. What a part writes
# lands in $OUT (the device tool brings it back), or in /tmp/gpu-checks.
set -uo pipefail
export PYTHONUNBUFFERED=1
if ls .whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
out="${OUT:-/tmp/gpu-checks}"
mkdir -p "$out"
quick="${QUICK:-0}"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"

seconds=0
timed() {  # timed NAME COMMAND...: run it, print its wall time (also in $seconds), keep
           # its output in $out
    local name=$1
    shift
    local start
    start=$(date +%s.%N)
    "$@" > "$out/$name.log" 2>&1
    local rc=$?
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    echo "$name: exit $rc, $seconds s wall"
    tail -n 25 "$out/$name.log"
    return $rc
}

case "${1:-}" in
demo)
    if [ "$quick" = 1 ]; then sizes=(--frames 4 --size 192 --epochs 1); else sizes=(); fi
    timed demo python3 -m latentpath demo --out /tmp/gpu-demo "${sizes[@]}"
    python3 -m latentpath evaluate /tmp/gpu-demo/stem-run | tee "$out/evaluate-stem.txt"
    python3 -m latentpath evaluate /tmp/gpu-demo/pfm-run | tee "$out/evaluate-pfm.txt"
    ;;
train)
    if [ "$quick" = 1 ]; then n=300 epochs=1 hidden=32; else n=20000 epochs=3 hidden=256; fi
    python3 - "$n" <<'EOF'
import sys
import numpy as np
from latentpath.synth.motifs import synth_motif_windows
windows, _ = synth_motif_windows(int(sys.argv[1]), window_px=70, pixel_size_A=0.06, seed=0)
np.save("/tmp/gpu-windows.npy", ((windows - windows.mean()) / windows.std()).astype(np.float32))
EOF
    timed train python3 -m latentpath rvae /tmp/gpu-windows.npy --out /tmp/gpu-model \
        --epochs "$epochs" --hidden "$hidden" --layers 4 --batch-size 100 --overwrite
    python3 - "$n" "$epochs" "$seconds" <<'EOF'
import json, sys
from pathlib import Path
n, epochs, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
training = json.loads(Path("/tmp/gpu-model/config.json").read_text())["training"]
print({k: training[k] for k in ("precision", "compile", "steps", "stop_reason", "val_loss")})
# the whole process (imports, compile, validation) over the training windows' passes:
# an upper bound on the time per window of a long run
rate = (1 - training["val_fraction"]) * n * epochs / seconds
print(f"{rate:.0f} training windows/s over the whole process: 61,654 windows x 300 "
      f"epochs would take at most {61654 * 300 / rate / 60:.1f} min (the issue's goal: 30)")
EOF
    ;;
discovery)
    if [ "$quick" = 1 ]; then extra=(--set map_points=20 --set epochs=1); else extra=(); fi
    timed discovery python3 benchmarks/eval_discovery.py --variants coarse-low-dose defect-rich \
        --seeds 0 --out /tmp/gpu-discovery "${extra[@]}"
    cp /tmp/gpu-discovery/results.json "$out/discovery-results.json" 2> /dev/null
    ;;
*)
    echo "usage: bash scripts/gpu_checks.sh demo|train|discovery" >&2
    exit 2
    ;;
esac
