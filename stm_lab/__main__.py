"""``python -m stm_lab [overrides]`` and the ``stm-lab`` script: a Hydra run or sweep.

``python -m stm_lab compare ...`` / ``stm-lab compare ...`` go to :mod:`stm_lab.compare` instead.
"""

from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "compare":
        from stm_lab.compare import main as compare_main

        sys.exit(compare_main(sys.argv[2:]))
    from stm_lab.threads import prepare_wait_policy

    prepare_wait_policy()  # before torch loads: OpenMP reads its wait policy only then
    from stm_lab.run import main as run_main

    run_main()


if __name__ == "__main__":
    main()
