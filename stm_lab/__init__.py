"""stm_lab: measure short-term memory in recurrent networks."""

__version__ = "0.1.0"
