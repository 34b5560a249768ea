"""dlhw: reproduce deep-learning homework results exactly, quickly and verifiably."""

__version__ = "0.1.0"
