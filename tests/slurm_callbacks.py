"""Callbacks the SLURM tests put into runs of a sweep through the config (``+callbacks.x``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from reliability_callbacks import PauseAt


class PauseSome(PauseAt):
    """:class:`PauseAt` in the runs of a sweep whose ``value`` (e.g. ``${seed}``) is in ``among``."""

    def __init__(self, value: object, among: list, step: int, marker: str, timeout: float = 300.0) -> None:
        super().__init__(step, marker, timeout)
        self.active = str(value) in {str(v) for v in among}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.active:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class WriteEnv(Callback):
    """At the start of fitting, write the interpreter that runs the job and the values of some
    environment variables (null if unset) to ``path``, as JSON."""

    def __init__(self, path: str, names: list[str]) -> None:
        self.path, self.names = Path(path), list(names)

    def on_fit_start(self, trainer, pl_module) -> None:
        seen = {"executable": sys.executable, "env": {n: os.environ.get(n) for n in self.names}}
        self.path.write_text(json.dumps(seen))
