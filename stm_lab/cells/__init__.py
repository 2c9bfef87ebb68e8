"""Recurrent cells. Each built-in cell declares itself once in its own module (``rnn``, ``lstm``,
``gru``): fast path, gates, memory gate, reference equations. A researcher's own cell is any
``nn.Module`` following the cell protocol (:mod:`stm_lab.cells.recurrent`), named in config by
``cell._target_``."""

from stm_lab.cells.core import CoreOutput, run_core
from stm_lab.cells.definition import CELLS, CellDef
from stm_lab.cells.gru import GRU
from stm_lab.cells.lstm import LSTM
from stm_lab.cells.recurrent import TorchRecurrent
from stm_lab.cells.reference import Internals, ReferenceRecurrent
from stm_lab.cells.rnn import RNN

__all__ = ["CELLS", "GRU", "LSTM", "RNN", "CellDef", "CoreOutput", "Internals", "ReferenceRecurrent",
           "TorchRecurrent", "run_core"]
