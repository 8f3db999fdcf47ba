"""vault: a Git-backed memory vault for AI agents."""

__version__ = "0.1.0"
