#!/usr/bin/env bash
# Reproduce the memory-span study, then write the comparison to results/memory_span/:
#   cells:           rnn, lstm, gru (the project defaults)  x delays 5,10,20,40 x seeds 0,1,2 = 36 runs
#   rnn_default_init: rnn with torch's default recurrent init (as in Bai et al. 2018)       = 12 runs
# Runs one after another (~35 min on a shared 2-core CPU). From the repository root:
#   bash experiments/memory_span/run.sh
# SWEEP_DIR=... moves the runs (default outputs/memory_span); SKIP_CELLS=1 skips the first sweep
# (e.g. to add the second to a finished first one). Re-running the comparison alone:
#   python -m stm_lab.compare outputs/memory_span --by cell recurrent_init --over delay --out results/memory_span
set -euo pipefail
cd "$(dirname "$0")/../.."
SWEEP_DIR=${SWEEP_DIR:-outputs/memory_span}
PY=${PYTHON:-python}
# One thread per run: the runs are small and sequential, and a shared CPU stays responsive.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
DELAYS=5,10,20,40
SEEDS=0,1,2

if [[ "${SKIP_CELLS:-0}" != 1 ]]; then
nice -n 10 "$PY" -m stm_lab -m +experiment=memory_span cell=rnn,lstm,gru data.delay=$DELAYS seed=$SEEDS \
    logger=csv hydra.sweep.dir="$SWEEP_DIR/cells"
fi
nice -n 10 "$PY" -m stm_lab -m +experiment=memory_span cell=rnn cell.recurrent_init=default \
    data.delay=$DELAYS seed=$SEEDS logger=csv hydra.sweep.dir="$SWEEP_DIR/rnn_default_init"

"$PY" -m stm_lab.compare "$SWEEP_DIR" --by cell recurrent_init --over delay --metric test/acc \
    --out results/memory_span
