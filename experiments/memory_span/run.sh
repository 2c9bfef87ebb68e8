#!/usr/bin/env bash
# The memory-span study, in one go, from the repository root:
#   bash experiments/memory_span/run.sh
# 1. One network per (cell, delay, seed): rnn, lstm, gru x delays 5,10,20,40 x seeds 0-2 (36 runs) with
#    one training budget (conf/experiment/memory_span.yaml); compare -> results/memory_span/.
# 2. Train once, test at many delays: the runs trained at delay 10 are evaluated at delays
#    5..160 (stm_lab.eval); compare -> results/forgetting/, and the two curves side by side.
# JOBS=2 runs two jobs at a time (one thread each); SWEEP_DIR moves the runs (default
# outputs/memory_span). Re-running resumes: completed runs are skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
SWEEP_DIR=${SWEEP_DIR:-outputs/memory_span}
PY=${PYTHON:-python}
JOBS=${JOBS:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=${WANDB_MODE:-offline}
DELAYS=5,10,20,40
SEEDS=0,1,2
EVAL_DELAYS=5,10,20,40,80,160

nice -n 10 "$PY" -m stm_lab -m +experiment=memory_span cell=rnn,lstm,gru data.delay=$DELAYS seed=$SEEDS \
    logger=csv skip_completed=true hydra/launcher=joblib hydra.launcher.n_jobs="$JOBS" \
    hydra.sweep.dir="$SWEEP_DIR/trained"
"$PY" -m stm_lab.compare "$SWEEP_DIR/trained" --by cell --over delay --metric test/acc --out results/memory_span

# The runs trained at delay 10, each evaluated at every delay of EVAL_DELAYS.
RUNS=$("$PY" - "$SWEEP_DIR/trained" <<'PYEOF'
import json, sys
from pathlib import Path
runs = [p.parent for p in Path(sys.argv[1]).rglob("summary.json")
        if (s := json.loads(p.read_text()))["status"] == "completed" and s["config"]["data"]["delay"] == 10]
# Quoted: a sweep job's folder is named by its overrides ("cell=gru,seed=1"), and an unquoted
# "=" or "," would be read by Hydra's override parser.
print(",".join(f"'{run}'" for run in sorted(map(str, runs))))
PYEOF
)
rm -rf "$SWEEP_DIR/evals"
nice -n 10 "$PY" -m stm_lab.eval -m "run=$RUNS" data.delay=$EVAL_DELAYS wandb=false \
    hydra/launcher=joblib hydra.launcher.n_jobs="$JOBS" hydra.sweep.dir="$SWEEP_DIR/evals"
"$PY" -m stm_lab.compare "$SWEEP_DIR/evals" --by cell --over delay --metric test/acc --out results/forgetting
"$PY" experiments/memory_span/plot.py results/memory_span/aggregate.csv results/forgetting/aggregate.csv \
    results/forgetting/trained_once_vs_per_delay.png
