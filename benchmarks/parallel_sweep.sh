#!/usr/bin/env bash
# K parallel sweep jobs (hydra/launcher=joblib) against the same K jobs one after another
# (Hydra's basic launcher): wall time of the whole multirun command, start-up included.
#   nice -n 10 bash benchmarks/parallel_sweep.sh [K] [N_JOBS]
# The runs are small on purpose (a 64-unit LSTM, 2000 sequences, 2 epochs): the case where
# parallel jobs pay, because one job cannot keep the machine busy.
set -euo pipefail
K=${1:-4}
N_JOBS=${2:-2}
OUT=${OUT:-$(mktemp -d)}
SEEDS=$(seq -s, 0 $((K - 1)))
RUN=(python -m stm_lab -m "seed=$SEEDS" data.n_train=2000 data.n_val=500 data.n_test=500
     cell.hidden_size=64 trainer.max_epochs=2 trainer.accelerator=cpu logger=none
     callbacks.progress_bar=null "paths.log_dir=$OUT")
export STM_LAB_CACHE="$OUT/cache" WANDB_MODE=offline
"${RUN[@]}" "hydra.sweep.dir=$OUT/warmup" seed=0 > /dev/null 2>&1   # data cached, files warm
t0=$(date +%s.%N)
"${RUN[@]}" "hydra.sweep.dir=$OUT/sequential" > "$OUT/sequential.log" 2>&1
t1=$(date +%s.%N)
"${RUN[@]}" "hydra.sweep.dir=$OUT/parallel" hydra/launcher=joblib "hydra.launcher.n_jobs=$N_JOBS" > "$OUT/parallel.log" 2>&1
t2=$(date +%s.%N)
python - "$t0" "$t1" "$t2" "$K" "$N_JOBS" <<'PY'
import sys
t0, t1, t2, k, n = map(float, sys.argv[1:])
seq, par = t1 - t0, t2 - t1
print(f"{int(k)} jobs: sequential {seq:.1f} s, joblib n_jobs={int(n)} {par:.1f} s, speed-up {seq / par:.2f}x")
PY
