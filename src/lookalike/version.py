"""The version of lookalike (recorded in every index it writes)."""
__version__ = "0.3.0"
