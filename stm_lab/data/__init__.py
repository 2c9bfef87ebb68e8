"""Data: tasks materialised as cached ``datasets`` splits, served by one LightningDataModule."""

from stm_lab.data.module import MODULE_KEYS, MemoryDataModule, build_task

__all__ = ["MODULE_KEYS", "MemoryDataModule", "build_task"]
