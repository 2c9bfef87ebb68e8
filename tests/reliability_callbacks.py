"""Callbacks the reliability tests put into real runs through the config (``+callbacks.x._target_``)."""

from __future__ import annotations

import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class PauseAt(Callback):
    """At optimiser step ``step``: write ``marker`` and wait (up to ``timeout`` s) for the stop signal
    the test sends, so the signal lands at a known point. A resumed run starts past ``step``; one
    that passes it again (resumed from an earlier checkpoint) finds the marker and goes on."""

    def __init__(self, step: int, marker: str, timeout: float = 120.0) -> None:
        self.step, self.marker, self.timeout = step, Path(marker), timeout

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step != self.step or self.marker.exists():
            return
        self.marker.write_text(str(trainer.global_step))
        deadline = time.monotonic() + self.timeout
        while not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.02)


class FailAt(Callback):
    """Raise an ordinary exception at optimiser step ``step``: a crash that is not the user's config."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"simulated crash at step {self.step}")
