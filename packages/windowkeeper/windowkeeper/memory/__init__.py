"""Memory strategies: choose which units of a conversation the model sees this turn."""

from __future__ import annotations

from windowkeeper.memory._base import Memory, MemoryView, StoredMemory, Summarizer, render_unit
from windowkeeper.memory._editing import ContextEditor
from windowkeeper.memory._recent import WindowMemory
from windowkeeper.memory._window import TokenWindow, TrimResult

__all__ = [
    "ContextEditor",
    "Memory",
    "MemoryView",
    "StoredMemory",
    "Summarizer",
    "TokenWindow",
    "TrimResult",
    "WindowMemory",
    "render_unit",
]
