"""The `borne` command: one entry point to every part of Borne."""

__version__ = "0.1.0"
