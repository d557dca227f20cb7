"""An LLM wrapper that fits every chat request an agent sends, tool loops included."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from windowkeeper import (
    Assembled,
    Budget,
    ContextAssembler,
    InvalidConfigError,
    TokenCounter,
    split_system,
)
from windowkeeper.adapters import check_compress_zones, check_compressor

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms import LLM
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.tools import BaseTool
from llama_index.memory.windowkeeper._convert import (
    to_core_messages,
    to_llama,
    usage_input_tokens,
)

__all__ = ["BudgetedLLM"]


class BudgetedLLM(FunctionCallingLLM):
    """Wraps any LlamaIndex LLM so that every chat request it receives fits the budget.

    ``FunctionAgent`` asks its memory only at the start and the end of a run and keeps the run's
    tool calls in its scratchpad, so a long tool loop can overflow the window whatever the memory
    does. Wrapped, every request goes through the core assembler first: the system prompt and the
    user's message unchanged, earlier turns kept newest first while they fit, the current turn's
    older tool results cleared pair-safely (placeholders keep their call ids) when the loop
    outgrows the window, and :class:`~windowkeeper.BudgetExceededError` with the shortfall if even
    that cannot fit. The provider's reported input tokens are fed to the counter's calibration;
    :attr:`last_report` holds the last request's budget report.

    Args:
        llm: The LLM to wrap (a ``FunctionCallingLLM`` for agents with tools).
        model: Model profile to count with.
        budget: Window, reserve and zone limits (default: ``Budget.for_model(model)``).
        compressor: A :class:`~windowkeeper.Compressor` (``windowkeeper-llmlingua``'s
            ``ChunkCompressor``) for the zones ``compress_zones`` allows: ``"system"`` (a system
            prompt that does not fit is compressed, cached, the prefix stable) and ``"history"``
            (earlier turns' tool results, for the user's question); not ``"tools"`` (LlamaIndex
            tools carry their schemas as pydantic models). The user's message never is.
        compress_zones: Where the compressor may work (default ``("rag",)``).

    Example:
        >>> from llama_index.core.llms import MockLLM
        >>> from windowkeeper import Budget
        >>> llm = BudgetedLLM(llm=MockLLM(), budget=Budget(context_window=4000, generation_reserve=500))
        >>> llm.chat([ChatMessage(role="user", content="hi")]).message.role.value
        'assistant'
    """

    llm: LLM = Field(description="The wrapped LLM.")
    model: str = Field(default="gpt-4o", description="Model profile to count with.")
    budget: Budget | None = Field(default=None, exclude=True)
    compressor: Any = Field(
        default=None,
        exclude=True,
        description="A windowkeeper Compressor for the zones compress_zones allows.",
    )
    compress_zones: tuple[str, ...] = Field(
        default=("rag",),
        description="Where the compressor may work: 'rag', 'system', 'history'.",
    )

    _assembler: ContextAssembler = PrivateAttr()
    _last: Assembled | None = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        llm = data.get("llm")
        if not isinstance(llm, LLM):
            raise InvalidConfigError(f"llm must be a LlamaIndex LLM; got {type(llm).__name__}")
        budget = data.get("budget")
        if budget is not None and not isinstance(budget, Budget):
            raise InvalidConfigError(
                f"budget must be a Budget or None; got {type(budget).__name__}"
            )
        check_compressor(data.get("compressor"))
        zones = check_compress_zones(data.get("compress_zones", ("rag",)))
        if "tools" in zones:
            raise InvalidConfigError(
                "compress_zones must not include 'tools' for BudgetedLLM: LlamaIndex tools carry "
                "their schemas as pydantic models, which it cannot send shortened; got "
                f"{data.get('compress_zones')!r} (use 'rag', 'system' and 'history')"
            )
        super().__init__(**data)

    def model_post_init(self, context: Any, /) -> None:
        counter = TokenCounter(self.model)
        self._assembler = ContextAssembler(
            counter,
            self.budget or Budget.for_model(counter.profile),
            compressor=self.compressor,
            compress_zones=self.compress_zones,
        )

    @classmethod
    def class_name(cls) -> str:
        """Name LlamaIndex serialises the class under."""
        return "BudgetedLLM"

    @property
    def metadata(self) -> LLMMetadata:
        """The wrapped LLM's metadata."""
        return self.llm.metadata

    @property
    def counter(self) -> TokenCounter:
        """The counter requests are fitted with."""
        return self._assembler.counter

    @property
    def last_report(self) -> Any:
        """The budget report of the last request (``None`` before the first)."""
        return self._last.report if self._last is not None else None

    # ------------------------------------------------------------------------------ fitting

    def fit(
        self, messages: Sequence[ChatMessage], tools: Sequence[BaseTool] = ()
    ) -> list[ChatMessage]:
        """``messages`` as the request to send: within the budget, unchanged where it fits."""
        messages = list(messages)
        core = to_core_messages(messages)
        system, rest = split_system(core)
        cut = next((i for i in range(len(rest) - 1, -1, -1) if rest[i].role == "user"), None)
        if cut is None:  # no user message: nothing to budget around
            return messages
        schemas = [t.metadata.to_openai_tool() for t in tools]
        out = self._assembler.assemble(
            rest[cut:], system=system or None, history=rest[:cut] or None, tools=schemas or None
        )
        self._last = out
        originals = {id(c): m for c, m in zip(core, messages, strict=True)}
        return [_original_or(originals, m) for m in out.messages]

    def _calibrate(self, response: ChatResponse) -> None:
        reported = usage_input_tokens(response)
        if reported and self._last is not None:
            self.counter.calibrate(self._last.report.prompt_tokens, reported)

    # ------------------------------------------------------------------------------ chat

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Fit, then chat."""
        response = self.llm.chat(self.fit(messages), **kwargs)
        self._calibrate(response)
        return response

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Fit, then chat (async)."""
        response = await self.llm.achat(self.fit(messages), **kwargs)
        self._calibrate(response)
        return response

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Fit, then stream."""
        return self.llm.stream_chat(self.fit(messages), **kwargs)

    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        """Fit, then stream (async)."""
        return await self.llm.astream_chat(self.fit(messages), **kwargs)

    # ------------------------------------------------------------------------------ tools

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The wrapped LLM's request, its messages fitted (tools counted)."""
        inner = self.llm
        if not isinstance(inner, FunctionCallingLLM):
            raise InvalidConfigError(
                f"tools need a function-calling LLM; {type(inner).__name__} is not one"
            )
        options: dict[str, Any] = {
            "user_msg": user_msg,
            "chat_history": chat_history,
            "verbose": verbose,
            "allow_parallel_tool_calls": allow_parallel_tool_calls,
            "tool_required": tool_required,
            **kwargs,
        }
        prepared = inner._prepare_chat_with_tools_compat(tools, **options)
        messages = self.fit(prepared.get("messages", []), tools)
        if self._last is not None and len(self._last.tools) < len(tools):
            # the tools zone was over its limit: send only the tools the budget was made with
            kept = {t["function"]["name"] for t in self._last.tools}
            prepared = inner._prepare_chat_with_tools_compat(
                [t for t in tools if t.metadata.get_name() in kept], **options
            )
        prepared["messages"] = messages
        return prepared

    def chat_with_tools(self, tools: Sequence[BaseTool], *args: Any, **kwargs: Any) -> ChatResponse:
        """Chat with tools, the request fitted."""
        prepared = self._prepare_chat_with_tools_compat(tools, *args, **kwargs)
        response = self.llm.chat(**prepared)
        self._calibrate(response)
        return self._validated(response, tools, kwargs)

    async def achat_with_tools(
        self, tools: Sequence[BaseTool], *args: Any, **kwargs: Any
    ) -> ChatResponse:
        """Chat with tools, the request fitted (async)."""
        prepared = self._prepare_chat_with_tools_compat(tools, *args, **kwargs)
        response = await self.llm.achat(**prepared)
        self._calibrate(response)
        return self._validated(response, tools, kwargs)

    def stream_chat_with_tools(
        self, tools: Sequence[BaseTool], *args: Any, **kwargs: Any
    ) -> ChatResponseGen:
        """Stream with tools, the request fitted."""
        return self.llm.stream_chat(**self._prepare_chat_with_tools_compat(tools, *args, **kwargs))

    async def astream_chat_with_tools(
        self, tools: Sequence[BaseTool], *args: Any, **kwargs: Any
    ) -> ChatResponseAsyncGen:
        """Stream with tools, the request fitted (async)."""
        prepared = self._prepare_chat_with_tools_compat(tools, *args, **kwargs)
        return await self.llm.astream_chat(**prepared)

    def _validated(
        self, response: ChatResponse, tools: Sequence[BaseTool], kwargs: dict[str, Any]
    ) -> ChatResponse:
        inner = self.llm
        assert isinstance(inner, FunctionCallingLLM)
        return inner._validate_chat_with_tools_response(
            response,
            tools,
            allow_parallel_tool_calls=kwargs.get("allow_parallel_tool_calls", False),
        )

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> Any:
        """The wrapped LLM's reading of tool calls."""
        inner = self.llm
        if not isinstance(inner, FunctionCallingLLM):
            raise InvalidConfigError(
                f"tools need a function-calling LLM; {type(inner).__name__} is not one"
            )
        return inner.get_tool_calls_from_response(
            response, error_on_no_tool_call=error_on_no_tool_call, **kwargs
        )

    # ------------------------------------------------------------------------------ completion

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """The wrapped LLM's completion (a single prompt is not a conversation)."""
        return self.llm.complete(prompt, formatted=formatted, **kwargs)

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        """Async :meth:`complete`."""
        return await self.llm.acomplete(prompt, formatted=formatted, **kwargs)

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        """Streaming :meth:`complete`."""
        return self.llm.stream_complete(prompt, formatted=formatted, **kwargs)

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """Async streaming :meth:`complete`."""
        return await self.llm.astream_complete(prompt, formatted=formatted, **kwargs)


def _original_or(originals: dict[int, ChatMessage], message: Any) -> ChatMessage:
    original = originals.get(id(message))
    return original if original is not None else to_llama(message)
