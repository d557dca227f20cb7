"""Exact, offline token counting: encodings, chat and tool overhead, cache, calibration, breakdown."""

from __future__ import annotations

from windowkeeper.tokens._breakdown import ContentShare, TextBreakdown, breakdown
from windowkeeper.tokens._calibration import Calibration, CalibrationStats, prompt_tokens_from_usage
from windowkeeper.tokens._chat import format_tool_definitions, image_tokens
from windowkeeper.tokens._counter import TokenCounter, ToolChoice
from windowkeeper.tokens._encodings import (
    ENCODINGS,
    HFTokenizerEncoder,
    TextEncoder,
    TiktokenEncoder,
    load_encoding,
)

__all__ = [
    "ENCODINGS",
    "Calibration",
    "CalibrationStats",
    "ContentShare",
    "HFTokenizerEncoder",
    "TextBreakdown",
    "TextEncoder",
    "TiktokenEncoder",
    "TokenCounter",
    "ToolChoice",
    "breakdown",
    "format_tool_definitions",
    "image_tokens",
    "load_encoding",
    "prompt_tokens_from_usage",
]
