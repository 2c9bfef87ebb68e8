"""A callback the SLURM tests put into one run of a sweep through the config (``+callbacks.x``)."""

from __future__ import annotations

from reliability_callbacks import PauseAt


class PauseOne(PauseAt):
    """:class:`PauseAt` in the one run of a sweep whose ``value`` (e.g. ``${seed}``) is ``when``."""

    def __init__(self, value: object, when: object, step: int, marker: str, timeout: float = 120.0) -> None:
        super().__init__(step, marker, timeout)
        self.active = str(value) == str(when)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.active:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
