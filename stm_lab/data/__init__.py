"""Data: tasks materialised as cached ``datasets`` splits, served by one LightningDataModule."""

from stm_lab.data.module import MemoryDataModule, module_keys

__all__ = ["MemoryDataModule", "module_keys"]
