"""windowkeeper: manage the LLM context window as a budget.

Exact offline token accounting, zone budgets, utilization monitoring and planning tools, with no
framework dependency. Importing this package loads no tokenizer and opens no file.
"""

from __future__ import annotations

import logging as _logging

from windowkeeper._budget import Budget, BudgetReport, Dropped, Level, Zone
from windowkeeper._messages import (
    ContentPart,
    ImagePart,
    Message,
    OtherPart,
    ReasoningPart,
    Role,
    TextPart,
    ToolCall,
    messages_from_openai,
    messages_to_openai,
    validate_tool_pairs,
)
from windowkeeper._monitor import MonitorSummary, QualityBucket, Record, UtilizationMonitor
from windowkeeper._profiles import (
    ChatFormat,
    ImageRule,
    ModelProfile,
    ModelRegistry,
    default_registry,
    get_profile,
    register_model,
)
from windowkeeper._transcript import (
    Transcript,
    TranscriptAudit,
    TurnRow,
    audit_transcript,
    load_transcript,
)
from windowkeeper._units import Unit, group_units, split_system
from windowkeeper.exceptions import (
    ApproximateCountWarning,
    BudgetExceededError,
    EncodingError,
    InvalidConfigError,
    InvalidMessageError,
    PrefixCacheWarning,
    UnknownModelError,
    WindowkeeperError,
    WindowkeeperWarning,
)
from windowkeeper.memory import ContextEditor, TokenWindow, TrimResult
from windowkeeper.planning import (
    KV_PRESETS,
    CreepProjection,
    KVCacheSize,
    KVSpec,
    PrefixCheck,
    PrefixVerdict,
    PromptCreepLog,
    PromptCreepReport,
    fit_creep,
    format_bytes,
    kv_cache_size,
    prefix_fingerprint,
    project_creep,
)
from windowkeeper.stores import ConversationStore, MemoryStore, SQLiteStore
from windowkeeper.tokens import (
    Calibration,
    CalibrationStats,
    ContentShare,
    HFTokenizerEncoder,
    TextBreakdown,
    TextEncoder,
    TiktokenEncoder,
    TokenCounter,
    breakdown,
    load_encoding,
    prompt_tokens_from_usage,
)

# a library never prints through logging's last-resort handler: the app decides where logs go
_logging.getLogger("windowkeeper").addHandler(_logging.NullHandler())

__version__ = "0.1.0"

__all__ = [
    "KV_PRESETS",
    "ApproximateCountWarning",
    "Budget",
    "BudgetExceededError",
    "BudgetReport",
    "Calibration",
    "CalibrationStats",
    "ChatFormat",
    "ContentPart",
    "ContentShare",
    "ContextEditor",
    "ConversationStore",
    "CreepProjection",
    "Dropped",
    "EncodingError",
    "HFTokenizerEncoder",
    "ImagePart",
    "ImageRule",
    "InvalidConfigError",
    "InvalidMessageError",
    "KVCacheSize",
    "KVSpec",
    "Level",
    "MemoryStore",
    "Message",
    "ModelProfile",
    "ModelRegistry",
    "MonitorSummary",
    "OtherPart",
    "PrefixCacheWarning",
    "PrefixCheck",
    "PrefixVerdict",
    "PromptCreepLog",
    "PromptCreepReport",
    "QualityBucket",
    "ReasoningPart",
    "Record",
    "Role",
    "SQLiteStore",
    "TextBreakdown",
    "TextEncoder",
    "TextPart",
    "TiktokenEncoder",
    "TokenCounter",
    "TokenWindow",
    "ToolCall",
    "Transcript",
    "TranscriptAudit",
    "TrimResult",
    "TurnRow",
    "Unit",
    "UnknownModelError",
    "UtilizationMonitor",
    "WindowkeeperError",
    "WindowkeeperWarning",
    "Zone",
    "audit_transcript",
    "breakdown",
    "default_registry",
    "fit_creep",
    "format_bytes",
    "get_profile",
    "group_units",
    "kv_cache_size",
    "load_encoding",
    "load_transcript",
    "messages_from_openai",
    "messages_to_openai",
    "prefix_fingerprint",
    "project_creep",
    "prompt_tokens_from_usage",
    "register_model",
    "split_system",
    "validate_tool_pairs",
]
