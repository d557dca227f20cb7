"""``create_agent`` middleware: every model call built by the core assembler within the budget."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, NotRequired

from langchain.agents.middleware.types import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
    OmitFromInput,
)
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.config import get_config
from langgraph.runtime import Runtime
from langgraph.types import Command
from windowkeeper import (
    Assembled,
    Budget,
    Compressor,
    ConversationStore,
    Embedder,
    InvalidConfigError,
    InvalidMessageError,
    ModelProfile,
    TokenCounter,
    ToolSelector,
    UtilizationMonitor,
)
from windowkeeper.adapters import call_blocking
from windowkeeper.memory import Summarizer

from langchain_windowkeeper._engine import Engine, MemoryChoice, last_user_index

__all__ = ["WindowkeeperMiddleware", "WindowkeeperState"]

logger = logging.getLogger("langchain_windowkeeper")

STATE_KEY = "windowkeeper"


class WindowkeeperState(AgentState[Any]):
    """Agent state with the last request's budget report under ``"windowkeeper"``."""

    windowkeeper: NotRequired[Annotated[dict[str, Any], OmitFromInput]]


class WindowkeeperMiddleware(AgentMiddleware[WindowkeeperState, Any, Any]):
    """Exact per-zone budgets, whole tool groups, background summaries and recall for ``create_agent``.

    Before each model call the request is rebuilt by the core
    :class:`~windowkeeper.ContextAssembler`: the system prompt and tools first (byte-stable, so
    the provider can cache the prefix), then the conversation's memory for this thread (summary,
    recalled turns and recent turns, never a tool call without its result), then the current turn
    (the user's message, unchanged, and the agent's tool loop so far). Tools beyond their zone are
    chosen per query; inside one long tool loop the turn's older tool results are cleared, oldest
    first, and if even that cannot fit, :class:`~windowkeeper.BudgetExceededError` says by how much.
    The report (level, tokens per zone, what was dropped) goes to agent state under
    ``"windowkeeper"`` and to the monitor, whose callbacks fire on alert and act.

    Turns are stored once, keyed by the LangGraph ``thread_id``, in the store you give (a SQLite
    file continues conversations across restarts); the checkpointed ``messages`` are never edited
    or erased. Summaries are made in the background (by the chat model you pass, or the core's
    extractive notes) and never inside a model call; a failing summariser loses nothing. The
    provider's ``usage_metadata["input_tokens"]`` is fed to the counter's calibration.

    Args:
        model: The model profile to count and budget for (``"gpt-4o"``, ...). Default: the name
            the agent's chat model carries, read on its first call.
        budget: Window, reserve and zone limits. Default: ``Budget.for_model(model)``.
        counter: A core counter to share (its model names the profile).
        memory: ``"window"``, ``"summary"``, ``"recall"``, ``"layered"`` (default), or
            ``session_id -> Memory``.
        store: A :class:`~windowkeeper.ConversationStore`, a SQLite file path, or ``None`` for
            an in-process store (gone when the process ends).
        summarizer: A LangChain chat model that writes the summaries, a core summariser
            ``(previous, units) -> text``, or ``None`` for the core's extractive fact notes.
        embeddings: LangChain ``Embeddings`` or a core ``Embedder`` for recall, ``"default"``
            for the embedded MiniLM, ``None`` for BM25 alone.
        monitor: A :class:`~windowkeeper.UtilizationMonitor` (its callbacks fire on alert, act
            and overflow). Default: one that logs only.
        tool_selector: How tools are chosen when their zone is over its limit.
        max_utilization: Keep every request below this share of the window (e.g. ``0.8``).
        keep_tool_results: Context editing of the shown history: tool results older than this
            many newest ones become placeholders (and earlier reasoning is dropped), in the request
            only, never in the store. ``None`` (default): the history as the memory shows it.
        compressor: A :class:`~windowkeeper.Compressor` (``windowkeeper-llmlingua``'s
            ``ChunkCompressor``) for the zones ``compress_zones`` allows: ``"system"`` (a system
            prompt that does not fit is compressed, cached, the prefix stable) and ``"history"``
            (the shown history's older tool results, for the user's question) and ``"tools"``
            (tool descriptions, before a tool is dropped). The user's message never is.
        compress_zones: Where the compressor may work (default ``("rag",)``).
        session_id: The conversation id when the run has no ``thread_id``.
        **memory_options: Passed to the memory (``recent_units=``, ``summary_tokens=``, ...).

    Example:
        >>> from langchain.agents import create_agent
        >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
        >>> agent = create_agent(FakeListChatModel(responses=["Hello!"]),
        ...                      middleware=[WindowkeeperMiddleware("gpt-4o", memory="window")])
        >>> out = agent.invoke({"messages": [("user", "hi")]})
        >>> out["windowkeeper"]["report"]["level"], out["messages"][-1].content
        ('ok', 'Hello!')
    """

    state_schema = WindowkeeperState

    def __init__(
        self,
        model: str | ModelProfile | None = None,
        *,
        budget: Budget | None = None,
        counter: TokenCounter | None = None,
        memory: MemoryChoice = "layered",
        store: ConversationStore | str | os.PathLike[str] | None = None,
        summarizer: BaseChatModel | Summarizer | None = None,
        embeddings: Embeddings | Embedder | Literal["default"] | None = "default",
        monitor: UtilizationMonitor | None = None,
        tool_selector: ToolSelector | None = None,
        max_utilization: float | None = None,
        keep_tool_results: int | None = None,
        compressor: Compressor | None = None,
        compress_zones: Sequence[str] = ("rag",),
        session_id: str = "default",
        **memory_options: Any,
    ) -> None:
        super().__init__()
        if not isinstance(session_id, str) or not session_id:
            raise InvalidConfigError(f"session_id must be a non-empty str; got {session_id!r}")
        self.engine = Engine(
            model,
            budget=budget,
            counter=counter,
            memory=memory,
            store=store,
            summarizer=summarizer,
            embeddings=embeddings,
            monitor=monitor if monitor is not None else UtilizationMonitor(metrics="auto"),
            tool_selector=tool_selector,
            max_utilization=max_utilization,
            memory_options=memory_options,
            keep_tool_results=keep_tool_results,
            compressor=compressor,
            compress_zones=compress_zones,
        )
        self.session_id = session_id
        self._tool_cache: dict[int, tuple[Any, dict[str, Any] | None]] = {}

    # ------------------------------------------------------------------------------ hooks

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any] | AIMessage],
    ) -> ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]:
        """Send the budgeted request; record the report in state."""
        prepared, out = self._prepare(request)
        return self._finish(handler(prepared), out, request)

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any] | AIMessage]],
    ) -> ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]:
        """Async twin of :meth:`wrap_model_call` (a shared store is read off the event loop)."""
        prepared, out = await call_blocking(self.engine.store, self._prepare, request)
        return self._finish(await handler(prepared), out, request)

    def after_agent(self, state: WindowkeeperState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Store the run's finished turns (the next run, or a restart, sees them)."""
        self._store_run(state, runtime)
        return None

    async def aafter_agent(
        self, state: WindowkeeperState, runtime: Runtime[Any]
    ) -> dict[str, Any] | None:
        """Async twin of :meth:`after_agent` (a shared store is written off the event loop)."""
        await call_blocking(self.engine.store, self._store_run, state, runtime)
        return None

    def close(self) -> None:
        """Close every open memory (background summaries finish or stop; nothing stored is lost)."""
        if self.engine.ready:
            self.engine.sessions.close()

    # ------------------------------------------------------------------------------ work

    def thread_id(self, runtime: Runtime[Any] | None) -> str:
        """The conversation id: LangGraph's ``thread_id``, else the configured ``session_id``."""
        info = getattr(runtime, "execution_info", None)
        thread = getattr(info, "thread_id", None)
        if thread is None:
            try:
                thread = get_config().get("configurable", {}).get("thread_id")
            except RuntimeError:  # outside a runnable context
                thread = None
        return str(thread) if thread not in (None, "") else self.session_id

    def _store_run(self, state: Mapping[str, Any], runtime: Runtime[Any]) -> None:
        if not self.engine.ready:  # no model call yet (and no model named): nothing to store
            return
        messages: Sequence[BaseMessage] = state.get("messages", [])
        session = self.thread_id(runtime)
        try:
            self.engine.store_finished(session, messages)
        except InvalidMessageError:
            # the run stopped mid-turn (an interrupt, a tool call without its result): store what
            # is finished; the rest is stored when the turn completes
            cut = last_user_index(messages)
            if cut:
                self.engine.store_finished(session, messages, stop=cut)

    def _tools(
        self, tools: Sequence[BaseTool | dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], dict[str, Any], list[Any]]:
        """OpenAI schemas of the tools, the original by name, and tools we cannot count."""
        schemas: list[dict[str, Any]] = []
        by_name: dict[str, Any] = {}
        opaque: list[Any] = []
        previous, self._tool_cache = self._tool_cache, {}  # only this request's tools stay cached
        for tool in tools:
            cached = previous.get(id(tool))
            if cached is None or cached[0] is not tool:
                try:
                    schema: dict[str, Any] | None = convert_to_openai_tool(tool)
                except Exception:  # a provider's built-in tool: sent as is, not counted
                    schema = None
                if schema is not None and not isinstance(
                    schema.get("function", {}).get("name"), str
                ):
                    schema = None
                cached = (tool, schema)
                self._tool_cache[id(tool)] = cached
            schema = cached[1]
            if schema is None:
                opaque.append(tool)
            else:
                schemas.append(schema)
                by_name[schema["function"]["name"]] = tool
        return schemas, by_name, opaque

    def _prepare(self, request: ModelRequest[Any]) -> tuple[ModelRequest[Any], Assembled | None]:
        session = self.thread_id(request.runtime)
        messages = request.messages
        cut = last_user_index(messages)
        if cut is None:  # no user message yet: nothing to budget around, sent as it is
            return request, None
        self.engine.assembler(request.model)  # names the model on the first call when not given
        self.engine.store_finished(session, messages, stop=cut)
        schemas, by_name, opaque = self._tools(request.tools)
        out, sent = self.engine.assemble(
            session,
            messages[cut:],
            system=request.system_message,
            tools=schemas,
            chat_model=request.model,
        )
        overrides: dict[str, Any] = {"messages": sent}
        originals = {id(o) for o in schemas}
        shortened = any(id(t) not in originals for t in out.tools)
        if len(out.tools) != len(schemas) or shortened:
            # a dropped tool is left out; one whose descriptions were compressed is sent as its
            # shortened schema (what the budget counted); the agent runs tools by name either way
            overrides["tools"] = [
                *(
                    by_name[t["function"]["name"]] if id(t) in originals else dict(t)
                    for t in out.tools
                ),
                *opaque,
            ]
        return request.override(**overrides), out

    def _finish(
        self,
        response: ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any],
        out: Assembled | None,
        request: ModelRequest[Any],
    ) -> ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]:
        if out is None:
            return response
        inner = response.model_response if isinstance(response, ExtendedModelResponse) else response
        result = [inner] if isinstance(inner, AIMessage) else inner.result
        calibrated = self._calibrate(out, result)
        update = {STATE_KEY: _state_record(out, calibrated)}
        if isinstance(response, ExtendedModelResponse):
            command = response.command
            if command is not None and isinstance(command.update, dict):
                update = {**command.update, **update}
            return ExtendedModelResponse(
                model_response=response.model_response,
                command=Command(update=update),
            )
        model_response = (
            response if isinstance(response, ModelResponse) else ModelResponse(result=[response])
        )
        return ExtendedModelResponse(model_response=model_response, command=Command(update=update))

    def _calibrate(self, out: Assembled, result: Sequence[BaseMessage]) -> int | None:
        for message in result:
            usage = getattr(message, "usage_metadata", None)
            if (
                isinstance(message, AIMessage)
                and usage
                and isinstance(usage.get("input_tokens"), int)
            ):
                reported = int(usage["input_tokens"])
                if reported > 0:
                    self.engine.counter.calibrate(out.report.prompt_tokens, usage)
                    return reported
        return None


def _state_record(out: Assembled, reported: int | None) -> dict[str, Any]:
    view = out.view
    return {
        "report": out.report.to_dict(),
        "prefix_fingerprint": out.prefix_fingerprint,
        "summary_covers": view.summary_covers,
        "recent_units": [u.index for u in view.recent],
        "recalled_units": [u.index for u in view.recalled],
        "tools": [t["function"]["name"] for t in out.tools],
        "reported_input_tokens": reported,
    }
