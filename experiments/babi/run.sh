#!/usr/bin/env bash
# bAbI-style story QA (Weston et al. 2015) in the "1k" regime, then the comparison into results/babi/:
#   cells rnn, lstm, gru  x  distractors 0, 2, 4, 8  x  tasks qa 1, qa 2  x  seeds 0, 1, 2  =  72 runs
# (+experiment=babi: 1,000 training questions, embeddings of 50, 100 units, 30 epochs).
# About 1 CPU-hour in all (JOBS=2, the default: two runs at a time, one thread each); see
# README.md for the timing. An interrupted study resumes: finished runs are skipped.
# From the repository root:
#   bash experiments/babi/run.sh
#   SMOKE=1 bash experiments/babi/run.sh    # the same pipeline on tiny data, 2 seeds: a few minutes
# SWEEP_DIR=... moves the runs (default outputs/babi, or outputs/babi_smoke), OUT=... the comparison.
# Re-running the comparison alone (one call per task):
#   python -m stm_lab.compare outputs/babi/qa1 --by cell --over data.distractors --out results/babi/qa1
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=${WANDB_MODE:-offline}  # small runs: one thread each
JOBS=${JOBS:-2}
CELLS=rnn,lstm,gru
DISTRACTORS=0,2,4,8
SEEDS=0,1,2
SIZE=()
if [[ "${SMOKE:-0}" == 1 ]]; then
    SEEDS=0,1
    SIZE+=(data.n_train=64 data.n_val=32 data.n_test=64 cell.hidden_size=16 embedding_dim=8 trainer.max_epochs=1)
    SWEEP_DIR=${SWEEP_DIR:-outputs/babi_smoke}
    OUT=${OUT:-outputs/babi_smoke/compare}
else
    SWEEP_DIR=${SWEEP_DIR:-outputs/babi}
    OUT=${OUT:-results/babi}
fi

for QA in 1 2; do
    nice -n 10 "$PY" -m stm_lab -m +experiment=babi data.qa=$QA cell=$CELLS data.distractors=$DISTRACTORS \
        seed=$SEEDS ${SIZE[@]+"${SIZE[@]}"} logger=csv callbacks.progress_bar=null skip_completed=true \
        hydra/launcher=joblib hydra.launcher.n_jobs="$JOBS" \
        hydra.sweep.dir="$SWEEP_DIR/qa$QA"
    # The baselines are compared with: a chance level (1/6) and the floor each run recorded (the
    # best of the majority answer and the place named last before the question).
    "$PY" -m stm_lab.compare "$SWEEP_DIR/qa$QA" --by cell --over data.distractors --metric test/acc \
        --out "$OUT/qa$QA"
done
