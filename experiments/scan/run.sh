#!/usr/bin/env bash
# SCAN study (Lake & Baroni 2018) at CPU scale, then the comparison into results/scan/:
#   cells rnn, lstm, gru  x  attention none, additive (Bahdanau)  x  splits simple, length, add_jump
#   x  seeds 0, 1, 2  =  54 runs of an encoder-decoder with 1 layer of 64 units, six epochs each
#   (~96,000 presentations: the paper's 100,000, in batches of 32).
# About 1.5 CPU-hours in all (JOBS=2, the default: two runs at a time, one thread each); see
# README.md for the timing. An interrupted study resumes: finished runs are skipped.
# From the repository root:
#   bash experiments/scan/run.sh
#   SMOKE=1 bash experiments/scan/run.sh    # the same pipeline on tiny data, 2 seeds: a few minutes
# SWEEP_DIR=... moves the runs (default outputs/scan, or outputs/scan_smoke), OUT=... the comparison.
# Re-running the comparison alone:
#   python -m stm_lab.compare outputs/scan --by cell head.attention --over data.split \
#       --metric test/exact_match --out results/scan
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=${WANDB_MODE:-offline}  # small runs: one thread each
JOBS=${JOBS:-2}
CELLS=rnn,lstm,gru
ATTENTION=none,additive
SPLITS=simple,length,add_jump
SEEDS=0,1,2
# The study's network and budget, on top of +experiment=scan (the paper's regime otherwise:
# teacher forcing 0.5, clipping at 5, greedy decoding, exact match).
SIZE=(cell.hidden_size=64 cell.num_layers=1 embedding_dim=64 trainer.max_epochs=6)
if [[ "${SMOKE:-0}" == 1 ]]; then
    SEEDS=0,1
    SIZE=(cell.hidden_size=16 cell.num_layers=1 embedding_dim=16 trainer.max_epochs=1
          data.n_train=128 data.n_val=32 data.n_test=64)
    SWEEP_DIR=${SWEEP_DIR:-outputs/scan_smoke}
    OUT=${OUT:-outputs/scan_smoke/compare}
else
    SWEEP_DIR=${SWEEP_DIR:-outputs/scan}
    OUT=${OUT:-results/scan}
fi

nice -n 10 "$PY" -m stm_lab -m +experiment=scan cell=$CELLS head.attention=$ATTENTION data.split=$SPLITS \
    seed=$SEEDS "${SIZE[@]}" logger=csv callbacks.progress_bar=null skip_completed=true \
    hydra/launcher=joblib hydra.launcher.n_jobs="$JOBS" \
    hydra.sweep.dir="$SWEEP_DIR"

"$PY" -m stm_lab.compare "$SWEEP_DIR" --by cell head.attention --over data.split \
    --metric test/exact_match --out "$OUT"
"$PY" -m stm_lab.compare "$SWEEP_DIR" --by cell head.attention --over data.split \
    --metric test/token_acc --out "$OUT/token_acc"
