"""``python -m stm_lab [overrides]`` and the ``stm-lab`` script: a Hydra run or sweep.

``stm-lab compare|eval|predict ...`` (also ``python -m stm_lab compare ...``) go to
:mod:`stm_lab.compare`, :mod:`stm_lab.eval` and :mod:`stm_lab.predict` instead.
"""

from __future__ import annotations

import sys


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "compare":
        from stm_lab.compare import main as compare_main

        sys.exit(compare_main(sys.argv[2:]))
    from stm_lab.threads import prepare_wait_policy

    prepare_wait_policy()  # before torch loads (eval and predict too): OpenMP reads it only then
    if command in ("eval", "predict"):
        sys.argv = [f"stm-lab {command}", *sys.argv[2:]]
        if command == "eval":
            from stm_lab.eval import main as eval_main

            eval_main()
            return
        from stm_lab.predict import main as predict_main

        sys.exit(predict_main())
    from stm_lab.run import main as run_main

    run_main()


if __name__ == "__main__":
    main()
