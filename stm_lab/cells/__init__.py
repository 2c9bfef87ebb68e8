"""Recurrent cores: vanilla RNN, LSTM and GRU, on the fast path (torch.nn) or the reference path
(the equations step by step, exposing gates) with the same parameters."""

from stm_lab.cells.core import CELLS, RecurrentCore
from stm_lab.cells.reference import GATE_NAMES, Internals, ReferenceRecurrent

__all__ = ["CELLS", "GATE_NAMES", "Internals", "RecurrentCore", "ReferenceRecurrent"]
