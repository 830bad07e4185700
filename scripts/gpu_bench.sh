#!/bin/bash
# The GPU measurements of issue 7, for a machine with one CUDA GPU. Only --short (below) has run
# so far, on an H200 lease of 15 minutes: results/bench/gpu/README.md.
#
#   scripts/gpu_bench.sh DATA_ROOT [OUT_DIR]     e.g. scripts/gpu_bench.sh ../shared/data/cifar10-jpeg
#
# 1. throughput, ResNet-20 BN at batch 512: the four bench variants, plain and with the GPU
#    options (channels_last + bf16 autocast + torch.compile);
# 2. time to 91% test accuracy on full CIFAR-10 (the published recipe, scale=full, seed 0, GPU
#    options on; evaluation every epoch; the run's steps_to_test_acc and wall time give it);
# 3. wall time of one lr_sweep (scale=cpu grid: 120 runs of 4 epochs on 10k images) through
#    Hydra's joblib launcher with 1, 2, 4 and 8 jobs sharing the GPU.
# Everything goes to OUT_DIR (default results/bench/gpu); rerunning skips finished runs.
#
#   scripts/gpu_bench.sh --short OUT_DIR
#
# A lease of ~15 minutes of GPU time (a machine the CIFAR-10 copy cannot travel to) fits only
# part of it, on synthetic data, each step under its own time limit, every output file directly
# in OUT_DIR: 1. at batch 512 and at 128; 3. on 8 runs of lr_sweep's cpu scale (norm {bn, none}
# x lr {0.05, 0.1, 0.2, 0.4}, seed 0, synthetic data) with 8, 4 and 1 jobs. No time to 91%.
set -euo pipefail
PY=${PYTHON:-python}
if [ "${1:-}" = "--short" ]; then
  OUT=${2:?usage: scripts/gpu_bench.sh --short OUT_DIR}
  mkdir -p "$OUT"
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $PY -c 'import torch, platform; print("torch", torch.__version__, "python", platform.python_version())'
    nproc; } 2>&1 | tee "$OUT/gpu.txt"
  set +e  # one failed or timed-out step leaves the others' results
  for b in 512 128; do
    timeout 100 $PY -m bnstudy bench --device cuda --batch $b --steps 50 --quick --out "$OUT/bench_b$b.json"
    timeout 150 $PY -m bnstudy bench --device cuda --batch $b --steps 50 --quick --channels-last --bf16 --compile \
        --out "$OUT/bench_b${b}_fast.json"
  done
  for n in 8 4 1; do  # 1 last: the longest, cut first if the lease runs out
    s=$(date +%s)
    timeout $((n == 1 ? 200 : 120)) $PY -m bnstudy run +exp=lr_sweep scale=cpu data=synthetic device=cuda norm=bn,none \
        optim.lr=0.05,0.1,0.2,0.4 seed=0 hydra/launcher=joblib hydra.launcher.n_jobs=$n \
        hydra.sweep.dir="/tmp/lr_sweep_jobs$n" > "/tmp/lr_sweep_jobs$n.log" 2>&1
    rc=$?
    echo "lr_sweep subset (8 runs, synthetic), joblib n_jobs=$n: $(( $(date +%s) - s )) s, exit $rc," \
         "$(ls /tmp/lr_sweep_jobs$n/*/summary.json 2>/dev/null | wc -l) runs finished" | tee -a "$OUT/joblib.txt"
    [ $rc = 0 ] || tail -5 "/tmp/lr_sweep_jobs$n.log"
  done
  exit 0
fi
DATA=${1:?usage: scripts/gpu_bench.sh DATA_ROOT [OUT_DIR]}
OUT=${2:-results/bench/gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
git rev-parse HEAD > "$OUT/commit.txt"

$PY -m bnstudy bench --device cuda --batch 512 --steps 50 --data-root "$DATA" --out "$OUT/bench_b512.json" | tee "$OUT/bench_b512.txt"
$PY -m bnstudy bench --device cuda --batch 512 --steps 50 --quick --channels-last --bf16 --compile \
    --out "$OUT/bench_b512_fast.json" | tee "$OUT/bench_b512_fast.txt"

FAST="device=cuda trainer.precision=bf16 trainer.channels_last=true trainer.compile=true"
/usr/bin/time -f "%e s" -o "$OUT/time_to_91.wall" $PY -m bnstudy run scale=full data=cifar10_folder \
    data.root="$DATA" $FAST "trainer.acc_thresholds=[0.8,0.85,0.9,0.91,0.92]" \
    hydra.run.dir="$OUT/time_to_91" > "$OUT/time_to_91.log" 2>&1
$PY - "$OUT/time_to_91/summary.json" <<'PY' | tee "$OUT/time_to_91.txt"
import json, sys
s = json.load(open(sys.argv[1]))
k = s["steps_to_test_acc"].get("0.91")
per_step = s["wall_time_s"] / s["steps"]  # evaluation and probes included
print(f"final test acc {s['final_test_acc']:.4f}; 91% at step {k} of {s['steps']}; "
      + (f"about {k * per_step / 60:.1f} min at the run's mean {per_step * 1e3:.0f} ms/step" if k else "91% not reached"))
PY

for n in 1 2 4 8; do
  s=$(date +%s)
  $PY -m bnstudy run +exp=lr_sweep scale=cpu data=cifar10_folder data.root="$DATA" device=cuda \
      hydra/launcher=joblib hydra.launcher.n_jobs=$n hydra.sweep.dir="$OUT/lr_sweep_jobs$n" > "$OUT/lr_sweep_jobs$n.log" 2>&1
  echo "lr_sweep (120 runs), joblib n_jobs=$n: $(( $(date +%s) - s )) s" | tee -a "$OUT/joblib.txt"
done
