from __future__ import annotations

import json
import subprocess
import sys

import windowkeeper

EXPECTED = [
    "KV_PRESETS",
    "MESSAGE_ID",
    "ApproximateCountWarning",
    "Assembled",
    "Budget",
    "BudgetExceededError",
    "BudgetReport",
    "Calibration",
    "CalibrationStats",
    "ChatFormat",
    "ChatSummarizer",
    "Chunk",
    "CloneArtifact",
    "CompressedChunkInfo",
    "CompressionOutcome",
    "Compressor",
    "ContentPart",
    "ContentShare",
    "ContextAssembler",
    "ContextEditor",
    "ConversationStore",
    "CreepProjection",
    "Decision",
    "Dropped",
    "Embedder",
    "EncodingError",
    "FactNotes",
    "HFTokenizerEncoder",
    "ImagePart",
    "ImageRule",
    "InvalidConfigError",
    "InvalidMessageError",
    "KVCacheSize",
    "KVSpec",
    "LayerSplit",
    "LayeredMemory",
    "Level",
    "Memory",
    "MemoryStore",
    "MemoryView",
    "Message",
    "ModelNotInstalledError",
    "ModelProfile",
    "ModelRegistry",
    "MonitorSummary",
    "OtherPart",
    "PostgresStore",
    "PrefixCacheWarning",
    "PrefixCheck",
    "PrefixVerdict",
    "PromptCreepLog",
    "PromptCreepReport",
    "QualityBucket",
    "ReasoningPart",
    "RecallIndex",
    "RecallSettings",
    "Record",
    "Replay",
    "ReplayTurn",
    "RetryPolicy",
    "Role",
    "RollingSummary",
    "SQLiteStore",
    "Sessions",
    "Snippet",
    "StateStore",
    "StoreUnavailableError",
    "StoredMemory",
    "SummaryError",
    "SummaryKeeper",
    "SummaryRecord",
    "SummaryTimeoutError",
    "TextBreakdown",
    "TextEncoder",
    "TextPart",
    "TiktokenEncoder",
    "TokenCounter",
    "TokenWindow",
    "ToolCall",
    "ToolSelection",
    "ToolSelector",
    "Transcript",
    "TranscriptAudit",
    "TrimResult",
    "TurnLog",
    "TurnRecall",
    "TurnRow",
    "Unit",
    "UnknownModelError",
    "UtilizationMonitor",
    "WindowMemory",
    "WindowkeeperError",
    "WindowkeeperWarning",
    "Zone",
    "as_embedder",
    "as_message",
    "as_messages",
    "audit_transcript",
    "breakdown",
    "build_memory",
    "chunks_from",
    "clone_conversation",
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
    "place_chunks",
    "prefix_fingerprint",
    "project_creep",
    "prompt_tokens_from_usage",
    "register_model",
    "replay_transcript",
    "split_system",
    "validate_tool_pairs",
]


def test_all_is_pinned_and_sorted() -> None:
    assert windowkeeper.__all__ == EXPECTED
    assert windowkeeper.__all__ == sorted(windowkeeper.__all__, key=lambda n: (not n.isupper(), n))
    for name in windowkeeper.__all__:
        assert hasattr(windowkeeper, name), name


def test_error_tree() -> None:
    assert issubclass(windowkeeper.InvalidConfigError, ValueError)
    assert issubclass(windowkeeper.InvalidMessageError, ValueError)
    assert issubclass(windowkeeper.UnknownModelError, KeyError)
    for name in (
        "InvalidConfigError",
        "InvalidMessageError",
        "UnknownModelError",
        "EncodingError",
        "BudgetExceededError",
    ):
        assert issubclass(getattr(windowkeeper, name), windowkeeper.WindowkeeperError)
    assert issubclass(windowkeeper.PrefixCacheWarning, windowkeeper.WindowkeeperWarning)


def test_import_is_light_and_offline() -> None:
    code = (
        "import sys, json, windowkeeper;"
        "heavy = ['tiktoken', 'torch', 'langchain', 'langchain_core', 'llama_index', 'transformers',"
        " 'llmlingua', 'tokenizers', 'matplotlib', 'rich', 'opentelemetry', 'numpy'];"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout) == []


def test_py_typed_is_shipped() -> None:
    from pathlib import Path

    assert (Path(windowkeeper.__file__).parent / "py.typed").is_file()


def test_sockets_are_blocked_in_tests() -> None:
    import socket

    import pytest
    from pytest_socket import SocketBlockedError

    with pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
