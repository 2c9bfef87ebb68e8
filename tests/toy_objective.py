"""A Hydra app with a known objective, for testing the Optuna sweeper without training.

(x - 2)^2, minimised at x = 2; x = 1 exits with code 2 as stm_lab does on a config error,
x = 3 raises and x = 4 returns NaN, as a diverging run would.
Each call appends its x to $TOY_LOG; with $TOY_KILL_AFTER=k the process kills itself (SIGKILL,
no clean-up) when trial k+1 starts, as if the machine went down in the middle of a search.
"""

import os
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore

ConfigStore.instance().store(name="toy", node={"x": 0, "optimized_metric": "objective"})


@hydra.main(config_path=None, config_name="toy", version_base="1.3")
def objective(cfg) -> float:
    log = Path(os.environ["TOY_LOG"])
    done = log.read_text().split() if log.exists() else []
    if len(done) == int(os.environ.get("TOY_KILL_AFTER", "-1")):
        os.kill(os.getpid(), signal.SIGKILL)
    with log.open("a") as f:
        f.write(f"{cfg.x}\n")
    if cfg.x == 1:
        sys.exit(2)
    if cfg.x == 3:
        raise RuntimeError("diverged")
    if cfg.x == 4:
        return float("nan")
    return float((cfg.x - 2) ** 2)


if __name__ == "__main__":
    objective()
