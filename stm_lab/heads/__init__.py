"""Task heads: from the core's states to predictions at the scored steps, each with its loss.
Named in config by ``head._target_``; ``head=auto`` takes the task's own: ``spec.default_head`` names
a ``conf/head/`` option."""

from stm_lab.heads.base import Head
from stm_lab.heads.readout import PerStepHead, SequenceHead
from stm_lab.heads.ridge import RidgeHead
from stm_lab.heads.seq2seq import Seq2SeqHead

__all__ = ["Head", "PerStepHead", "RidgeHead", "Seq2SeqHead", "SequenceHead"]
