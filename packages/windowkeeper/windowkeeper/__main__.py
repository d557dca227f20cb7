"""``python -m windowkeeper`` runs the command line."""

from __future__ import annotations

from windowkeeper.cli import entry

entry()
