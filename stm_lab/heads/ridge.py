"""A closed-form probe: a linear readout solved by ridge regression on a frozen network."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch

from stm_lab.errors import ConfigError
from stm_lab.heads.readout import PerStepHead, states_at_scored_steps
from stm_lab.tasks.spec import TaskSpec

if TYPE_CHECKING:
    import lightning.pytorch as pl


class RidgeHead(PerStepHead):
    """A linear readout at the scored steps, solved in closed form by ridge regression on a
    frozen network (Jaeger's readout for memory capacity; a linear probe in general).

    Weights minimise ``|H W + b - Y|^2 + alpha |W|^2`` over the training split's states
    (classes as one-hot targets). The head fits itself before the first validation or test;
    the network is never trained (use ``trainer.max_epochs=0``).
    """

    freezes_core = True

    def __init__(self, hidden_size: int, spec: TaskSpec, alpha: float) -> None:
        super().__init__(hidden_size, spec)
        if not (isinstance(alpha, int | float) and alpha >= 0):
            raise ConfigError("head.alpha", alpha, "a number >= 0")
        self.alpha, self.classes = float(alpha), spec.output_size if spec.is_classification else None
        self.proj.requires_grad_(False)
        self.register_buffer("fitted_flag", torch.tensor(False))

    @property
    def fitted(self) -> bool:
        return bool(self.fitted_flag)

    @torch.no_grad()
    def prepare(self, model: pl.LightningModule) -> None:
        if self.fitted:
            return

        def states():
            for batch in model.trainer.datamodule.train_dataloader():
                batch = {k: v.to(model.device) for k, v in batch.items()}
                yield states_at_scored_steps(model, batch), batch["y"][batch["mask"]]

        self.fit(states())

    @torch.no_grad()
    def fit(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Accumulate the normal equations batch by batch (float64), then solve once."""
        gram = cross = None
        for h, y in batches:
            if self.classes is not None:
                y = torch.nn.functional.one_hot(y, self.classes)
            h1 = torch.cat([h.double(), torch.ones(len(h), 1, dtype=torch.float64, device=h.device)], 1)
            y = y.double().reshape(len(h), -1)
            gram = h1.T @ h1 if gram is None else gram + h1.T @ h1
            cross = h1.T @ y if cross is None else cross + h1.T @ y
        if gram is None:
            raise ValueError("no training states to fit the ridge readout on")
        reg = self.alpha * torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
        reg[-1, -1] = 0.0  # the bias is not shrunk
        w = torch.linalg.lstsq(gram + reg, cross).solution  # lstsq: robust if alpha=0 and H is rank-deficient
        self.proj.weight.copy_(w[:-1].T.to(self.proj.weight.dtype))
        self.proj.bias.copy_(w[-1].to(self.proj.bias.dtype))
        self.fitted_flag.fill_(True)
