"""Task heads: readouts at the scored steps."""

from stm_lab.heads.readout import HEADS, PerStepHead, SequenceHead, build_head

__all__ = ["HEADS", "PerStepHead", "SequenceHead", "build_head"]
