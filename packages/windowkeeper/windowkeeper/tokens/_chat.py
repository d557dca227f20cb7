"""Chat-format rules that are not plain text: tool schemas, tool choice and images.

Tool schemas: OpenAI renders function definitions as a TypeScript ``namespace functions`` block
before counting. The rendering below reproduces all 36 API-checked cases of hmarr/openai-chat-tokens
(legacy ``functions``), the 18 API-checked cases of pamelafox/openai-messages-token-helper
(``tools``, within [API, API + 3]) and the OpenAI cookbook's weather example. The two fixture sets
disagree on one point: descriptions of properties nested two levels deep are left out by the legacy
``functions`` API and kept by the ``tools`` API, so ``nested_descriptions`` follows the request shape.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias

from windowkeeper._messages import ImagePart
from windowkeeper._profiles import ImageRule
from windowkeeper.exceptions import InvalidMessageError

__all__ = [
    "ToolApi",
    "format_tool_definitions",
    "function_of",
    "image_dimensions",
    "image_tokens",
    "tool_api_of",
]

ToolApi: TypeAlias = Literal["tools", "functions"]

TOOLS_OVERHEAD = 9
"""Tokens the tool block adds around the rendered definitions."""
SYSTEM_WITH_TOOLS = -4
"""Tokens saved when a system message exists: the tool block reuses it."""


def function_of(tool: Mapping[str, Any], index: int = 0) -> Mapping[str, Any]:
    """The function definition of a tool dict (``{"type": "function", "function": {...}}`` or legacy)."""
    if not isinstance(tool, Mapping):
        raise InvalidMessageError(f"tools[{index}] must be a dict; got {type(tool).__name__}")
    function = tool.get("function", tool)
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise InvalidMessageError(
            f"tools[{index}] needs a function with a string 'name'; got {tool!r}"
        )
    return function


def tool_api_of(tools: Sequence[Mapping[str, Any]]) -> ToolApi:
    """``tools`` when every entry is ``{"type": "function", "function": ...}``, else ``functions``."""
    return "tools" if tools and all("function" in t for t in tools) else "functions"


def format_tool_definitions(
    tools: Sequence[Mapping[str, Any]], *, nested_descriptions: bool
) -> str:
    """Render tool schemas the way OpenAI puts them in the prompt."""
    lines = ["namespace functions {", ""]
    for i, tool in enumerate(tools):
        function = function_of(tool, i)
        if function.get("description"):
            lines.append(f"// {function['description']}")
        parameters = function.get("parameters") or {}
        if parameters.get("properties"):
            lines.append(f"type {function['name']} = (_: {{")
            lines.append(_format_object(parameters, 0, nested_descriptions))
            lines.append("}) => any;")
        else:
            lines.append(f"type {function['name']} = () => any;")
        lines.append("")
    lines.append("} // namespace functions")
    return "\n".join(lines)


def _format_object(obj: Mapping[str, Any], indent: int, nested_descriptions: bool) -> str:
    lines = []
    required = obj.get("required") or ()
    for key, prop in (obj.get("properties") or {}).items():
        if prop.get("description") and (nested_descriptions or indent < 2):
            lines.append(f"// {prop['description']}")
        optional = "" if key in required else "?"
        lines.append(f"{key}{optional}: {_format_type(prop, indent, nested_descriptions)},")
    pad = " " * indent
    return "\n".join(pad + line for line in lines)


def _format_type(prop: Mapping[str, Any], indent: int, nested_descriptions: bool) -> str:
    if "anyOf" in prop:
        return " | ".join(_format_type(p, indent, nested_descriptions) for p in prop["anyOf"])
    kind = prop.get("type")
    if kind == "string":
        return " | ".join(f'"{v}"' for v in prop["enum"]) if "enum" in prop else "string"
    if kind in ("number", "integer"):
        return " | ".join(str(v) for v in prop["enum"]) if "enum" in prop else "number"
    if kind in ("boolean", "null"):
        return str(kind)
    if kind == "object":
        return "\n".join(["{", _format_object(prop, indent + 2, nested_descriptions), "}"])
    if kind == "array":
        items = prop.get("items")
        return f"{_format_type(items, indent, nested_descriptions)}[]" if items else "any[]"
    return "any"


# ---------------------------------------------------------------------------------------- images

_DATA_URL = re.compile(r"^data:image/[\w.+-]+;base64,", re.ASCII)
_HIGH_DETAIL_MAX_TILES = 8  # 768 x 2048 after scaling: 2 x 4 tiles


def image_dimensions(url: str) -> tuple[int, int] | None:
    """Width and height read from a base64 data URL's header (PNG, GIF, JPEG, WebP); else ``None``."""
    match = _DATA_URL.match(url)
    if not match:
        return None
    try:
        data = base64.b64decode(url[match.end() :], validate=False)
    except (binascii.Error, ValueError):
        return None
    return _dimensions(data)


def _dimensions(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_dimensions(data)
    if data[:2] == b"\xff\xd8":
        return _jpeg_dimensions(data)
    return None


def _webp_dimensions(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _jpeg_dimensions(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(width), int(height)
        i += 2 + length
    return None


def image_tokens(part: ImagePart, rule: ImageRule) -> int:
    """Tokens of one image by OpenAI's tile rule.

    ``low`` costs the base. ``high`` and ``auto`` scale the image to fit 2048 × 2048, then its short
    side to 768, and cost ``base + tile × tiles`` of 512 px. Without known dimensions the upper bound
    (8 tiles) is used, so a budget is never under-counted.
    """
    if part.detail == "low":
        return rule.base_tokens
    dims = (part.width, part.height) if part.width and part.height else image_dimensions(part.url)
    if dims is None:
        return rule.base_tokens + rule.tile_tokens * _HIGH_DETAIL_MAX_TILES
    width, height = dims
    if max(width, height) > 2048:
        ratio = 2048 / max(width, height)
        width, height = int(width * ratio), int(height * ratio)
    if min(width, height) > 768:
        ratio = 768 / min(width, height)
        width, height = int(width * ratio), int(height * ratio)
    tiles = math.ceil(width / 512) * math.ceil(height / 512)
    return rule.base_tokens + rule.tile_tokens * tiles
