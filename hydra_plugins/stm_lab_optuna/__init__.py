"""stm_lab's Optuna sweeper for Hydra: ``hydra/sweeper=stm_lab_optuna``.

Built on Optuna's ask/tell API (Optuna >= 4). The study lives in an RDB storage, so running
the same command again resumes it; a trial that raises or returns NaN is recorded as FAIL and
the search goes on. Optuna is imported only when a search runs: Hydra imports this package on
every start-up to discover plugins.
"""
