"""``python -m stm_lab [overrides]`` and the ``stm-lab`` script."""

from stm_lab.run import main

if __name__ == "__main__":
    main()
