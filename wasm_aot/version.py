"""The compiler's version: recorded in every artifact and required to match when loading one."""
__version__ = "0.1.0"
