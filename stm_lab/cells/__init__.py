"""Recurrent cores: vanilla RNN, LSTM and GRU."""

from stm_lab.cells.core import CELLS, RecurrentCore

__all__ = ["CELLS", "RecurrentCore"]
