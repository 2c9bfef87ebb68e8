#!/usr/bin/env bash
# Literature check: copy memory, adding and sequential digits with rnn / lstm / gru at
# CPU-feasible sizes, one run at a time. Then collect.py writes results/literature/literature.csv.
# Usage: bash experiments/literature/run.sh   (about 10-15 minutes on a 2-core CPU)
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 WANDB_MODE=offline   # one thread: faster than two on a small busy CPU
OUT=outputs/literature
COMMON="logger=none callbacks.progress_bar=null seed=0"
for cell in rnn lstm gru; do
  # Copy memory, Arjovsky layout (10 symbols of 8, delimiter at T+9), T=50; scored on the recall window.
  nice -n 10 python -m stm_lab +experiment=copy cell=${cell} data.delay=50 data.n_train=4000 \
    cell.hidden_size=64 trainer.max_epochs=15 $COMMON hydra.run.dir=$OUT/copy_${cell}
  # Adding problem, Le/Arjovsky variant, T=100; Bai et al. used T=600.
  nice -n 10 python -m stm_lab +experiment=adding cell=${cell} data.length=100 data.n_train=4000 \
    cell.hidden_size=64 trainer.max_epochs=15 $COMMON hydra.run.dir=$OUT/adding_${cell}
  # Sequential digits, 64 pixel steps (the sequential-MNIST protocol on sklearn's 8x8 digits).
  nice -n 10 python -m stm_lab +experiment=seq_digits cell=${cell} data.batch_size=64 \
    cell.hidden_size=64 trainer.max_epochs=40 $COMMON hydra.run.dir=$OUT/seq_digits_${cell}
done
# Memory capacity of 20-unit nets, delays 1..40 (no published table to compare with):
# Jaeger's ridge readout on the frozen untrained net, and the net trained end to end.
nice -n 10 python -m stm_lab -m +experiment=mc_probe,memory_capacity cell=rnn,lstm,gru \
  $COMMON hydra.sweep.dir=$OUT/memory_capacity
python experiments/literature/collect.py $OUT
