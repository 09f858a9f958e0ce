"""Real govbus processes for tests (see govbus.process)."""

from govbus.process import GovbusProcess

__all__ = ["GovbusProcess"]
