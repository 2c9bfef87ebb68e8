#!/usr/bin/env bash
# Reproduce the memory-span study: 3 cells x 4 delays x 3 seeds = 36 runs, one after another,
# then the comparison table and figures in results/memory_span/.
#   bash experiments/memory_span/run.sh            # from the repository root
# SWEEP_DIR=... moves the runs (default outputs/memory_span); re-running compare alone:
#   python -m stm_lab.compare outputs/memory_span --by cell --over data.delay --out results/memory_span
set -euo pipefail
cd "$(dirname "$0")/../.."
SWEEP_DIR=${SWEEP_DIR:-outputs/memory_span}
PY=${PYTHON:-python}
# One thread per run: the runs are small and sequential, and a shared CPU stays responsive.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

nice -n 10 "$PY" -m stm_lab -m +experiment=memory_span \
    cell=rnn,lstm,gru data.delay=5,10,20,40 seed=0,1,2 \
    logger=csv hydra.sweep.dir="$SWEEP_DIR"

"$PY" -m stm_lab.compare "$SWEEP_DIR" --by cell --over data.delay --metric test/acc \
    --out results/memory_span
