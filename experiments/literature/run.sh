#!/usr/bin/env bash
# Literature check, in one go: copy memory, adding and sequential digits with rnn / lstm / gru at
# CPU-feasible sizes, seeds 0-2, then the memory capacity of 20-unit nets; each task compared
# over seeds with python -m stm_lab.compare into results/literature/<task>/.
# Usage, from the repository root: bash experiments/literature/run.sh
# JOBS=2 runs two jobs at a time (one thread each); OUT moves the runs (default outputs/literature).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-outputs/literature}
PY=${PYTHON:-python}
JOBS=${JOBS:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=${WANDB_MODE:-offline}
SWEEP="-m cell=rnn,lstm,gru seed=0,1,2 logger=none skip_completed=true hydra/launcher=joblib hydra.launcher.n_jobs=$JOBS"

# Copy memory, Arjovsky layout (10 symbols of 8, delimiter at T+9), T=50; scored on the recall window.
nice -n 10 "$PY" -m stm_lab $SWEEP +experiment=copy data.delay=50 data.n_train=4000 cell.hidden_size=64 \
    trainer.max_epochs=15 hydra.sweep.dir="$OUT/copy"
# Adding problem, Le/Arjovsky variant, T=100 (Bai et al. used T=600).
nice -n 10 "$PY" -m stm_lab $SWEEP +experiment=adding data.length=100 data.n_train=4000 cell.hidden_size=64 \
    trainer.max_epochs=15 hydra.sweep.dir="$OUT/adding"
# Sequential digits, 64 pixel steps (the sequential-MNIST protocol on scikit-learn's 8x8 digits).
nice -n 10 "$PY" -m stm_lab $SWEEP +experiment=seq_digits data.batch_size=64 cell.hidden_size=64 \
    trainer.max_epochs=40 hydra.sweep.dir="$OUT/seq_digits"
# Memory capacity of 20-unit nets, delays 1..40: Jaeger's ridge readout on the frozen untrained
# net, and the net trained end to end.
nice -n 10 "$PY" -m stm_lab $SWEEP +experiment=mc_probe hydra.sweep.dir="$OUT/mc_probe"
nice -n 10 "$PY" -m stm_lab $SWEEP +experiment=memory_capacity hydra.sweep.dir="$OUT/mc_trained"

for task in copy seq_digits; do
  "$PY" -m stm_lab.compare "$OUT/$task" --by cell --over none --metric test/acc --out "results/literature/$task"
done
"$PY" -m stm_lab.compare "$OUT/adding" --by cell --over none --metric test/mse --out results/literature/adding
for mc in mc_probe mc_trained; do
  "$PY" -m stm_lab.compare "$OUT/$mc" --by cell --over none --metric test/mc --out "results/literature/$mc"
done
