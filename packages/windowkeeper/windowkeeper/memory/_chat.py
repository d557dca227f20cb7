"""A summariser over any chat model: the prompt is the core's, the model is the application's."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from windowkeeper._units import Unit
from windowkeeper.exceptions import InvalidConfigError
from windowkeeper.memory._base import render_unit

__all__ = ["DEFAULT_CONDENSE_PROMPT", "DEFAULT_SUMMARY_PROMPT", "ChatComplete", "ChatSummarizer"]

DEFAULT_SUMMARY_PROMPT = (
    "You are a note-taker. Write the key facts of the conversation as short notes. Keep every "
    "name, number, date, id, amount, decision and promise exactly as written. No greetings, no "
    "advice, nothing that was not said."
)
"""System prompt of a summary call: notes on the new turns."""
DEFAULT_CONDENSE_PROMPT = (
    "You shorten notes. Rewrite the notes in fewer words. Keep every name, number, date, id, "
    "amount, decision and promise exactly as written. Drop repetition and filler. Add nothing."
)
"""System prompt of a condense call: the same facts in fewer words."""

ChatComplete = Callable[[list[dict[str, Any]]], "str | Awaitable[str]"]
"""``(OpenAI chat messages) -> reply text``, sync or async."""


class ChatSummarizer:
    """A :data:`~windowkeeper.memory.Summarizer` that asks a chat model for notes.

    Each call sends the summary prompt and the new turns (rendered as ``speaker: text`` lines, tool
    results abbreviated) and appends the model's notes to the previous summary, which is kept as
    it is: a model asked to rewrite a whole summary drops older facts. Keeping the summary within
    its cap is the :class:`~windowkeeper.memory.SummaryKeeper`'s job; it calls the summariser with
    no units to condense a level, and this sends the condense prompt.

    Framework adapters wrap their chat models with it (LangChain's ``BaseChatModel``, LlamaIndex's
    ``LLM``), so every framework gets the same prompts and the same fact-keeping rule. The
    keeper calls it off the request path; an async ``complete`` runs on the keeper's own loop.

    Args:
        complete: Sends OpenAI chat messages to a model and returns the reply text.
        prompt: System prompt of a summary call.
        condense_prompt: System prompt of a condense call.

    Example:
        >>> from windowkeeper import Message
        >>> def complete(chat):
        ...     return "- Ann's order is A-17."
        >>> unit = Unit(index=0, messages=(Message(role="user", content="Order A-17 please"),))
        >>> print(ChatSummarizer(complete)("- Ann likes tea.", [unit]))
        - Ann likes tea.
        - Ann's order is A-17.
    """

    def __init__(
        self,
        complete: ChatComplete,
        *,
        prompt: str = DEFAULT_SUMMARY_PROMPT,
        condense_prompt: str = DEFAULT_CONDENSE_PROMPT,
    ) -> None:
        if not callable(complete):
            raise InvalidConfigError(
                f"complete must be callable (chat messages -> reply text); got {complete!r}"
            )
        for label, value in (("prompt", prompt), ("condense_prompt", condense_prompt)):
            if not isinstance(value, str) or not value.strip():
                raise InvalidConfigError(f"{label} must be a non-empty str; got {value!r}")
        self.complete = complete
        self.prompt = prompt
        self.condense_prompt = condense_prompt

    def __repr__(self) -> str:
        return f"ChatSummarizer({self.complete!r})"

    def chat(self, previous: str, units: Sequence[Unit]) -> list[dict[str, Any]]:
        """The messages one call sends (summary prompt with units, condense prompt without)."""
        if not units:
            return [
                {"role": "system", "content": self.condense_prompt},
                {"role": "user", "content": f"Notes:\n{previous}\n\nRewrite the notes."},
            ]
        turns = "\n".join(render_unit(u) for u in units)
        return [
            {"role": "system", "content": self.prompt},
            {"role": "user", "content": f"Conversation:\n{turns}\n\nWrite the notes."},
        ]

    def __call__(self, previous: str, units: Sequence[Unit]) -> str | Awaitable[str]:
        """``previous`` followed by the model's notes on ``units`` (condensed when no units)."""
        if not units and not previous.strip():
            return ""
        reply = self.complete(self.chat(previous, units))
        if inspect.isawaitable(reply):
            return self._finish_async(previous, units, reply)
        return self._finish(previous, units, reply)

    async def _finish_async(
        self, previous: str, units: Sequence[Unit], reply: Awaitable[str]
    ) -> str:
        return self._finish(previous, units, await reply)

    @staticmethod
    def _finish(previous: str, units: Sequence[Unit], reply: object) -> str:
        if not isinstance(reply, str):
            raise TypeError(f"the chat model's reply must be text; got {type(reply).__name__}")
        notes = reply.strip()
        if not units:
            return notes or previous
        return f"{previous.strip()}\n{notes}".strip()
