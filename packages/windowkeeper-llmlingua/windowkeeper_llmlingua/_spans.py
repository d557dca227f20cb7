"""Protected spans, re-exported from the core.

The core (:mod:`windowkeeper._spans`) finds them, keeps them in abbreviated tool results, and
compression keeps and checks them here.
"""

from __future__ import annotations

from windowkeeper._spans import DEFAULT_PATTERNS, Span, find_spans, missing_spans, protected_words

__all__ = ["DEFAULT_PATTERNS", "Span", "find_spans", "missing_spans", "protected_words"]
