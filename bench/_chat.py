"""The synthetic support chat the framework benchmarks share (seeded; each bench builds its messages)."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

M = TypeVar("M")

ITEMS = [
    "kettle",
    "laptop",
    "phone case",
    "coffee grinder",
    "desk lamp",
    "running shoes",
    "backpack",
    "monitor",
    "blender",
    "headphones",
    "air fryer",
    "office chair",
]
CITIES = ["Lyon", "Leeds", "Porto", "Graz", "Utrecht", "Malmö", "Bologna", "Cork", "Brno", "Ghent"]
CARRIERS = ["DHL", "UPS", "DPD", "GLS", "Royal Mail"]
USER = [
    "Hi, my order {order} still hasn't arrived. It was supposed to come on {date}.",
    "Can you check where order {order} is? I ordered a {item} and the tracking page says nothing.",
    "The {item} I received is broken, the lid doesn't close. I'd like a refund of {amount} please.",
    "I moved to {city} last week, can you change the delivery address for {order}?",
    "Is the {item} covered by the warranty if the battery stops charging after a few months?",
    "Thanks. And how long does a refund usually take to show up on my card?",
    "Could you send the invoice for {order} to my work email instead?",
    "I was charged twice for the {item}, {amount} each time. Can you look into it?",
    "Okay, and if the courier misses me again, can I pick the parcel up somewhere in {city}?",
    "Please cancel the second {item}, I only wanted one.",
]
ASSISTANT = [
    "I'm sorry about the wait with order {order}.",
    "I've checked our system and the parcel left our warehouse on {date} with {carrier}.",
    "The {item} is covered by a two-year warranty, which includes the battery.",
    "Refunds go back to the original payment method and usually take three to five working days.",
    "I've updated the delivery address to your new flat in {city}.",
    "You'll get an email confirmation within the next hour.",
    "If the courier misses you, the parcel goes to the nearest pick-up point for seven days.",
    "I can see both charges of {amount}; the duplicate was released and should disappear soon.",
    "I've sent a prepaid return label to your email, so you can drop the {item} at any post office.",
    "Is there anything else I can help you with today?",
    "Our records show the order was split into two parcels, the second one ships tomorrow.",
    "I've added a note to your account so the next agent sees the whole story.",
]


class SupportChat(ABC, Generic[M]):
    """A seeded synthetic support chat; subclasses build each framework's messages from its text."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.turns = 0

    def fill(self, text: str) -> str:
        r = self.rng
        return text.format(
            order=f"A-{r.randint(10_000, 99_999)}",
            item=r.choice(ITEMS),
            city=r.choice(CITIES),
            date=f"2025-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
            amount=f"€{r.randint(5, 400)}.{r.randint(0, 99):02d}",
            carrier=r.choice(CARRIERS),
        )

    def user_text(self) -> str:
        r = self.rng
        return " ".join(self.fill(r.choice(USER)) for _ in range(r.randint(1, 3)))

    def answer_text(self) -> str:
        r = self.rng
        return " ".join(self.fill(r.choice(ASSISTANT)) for _ in range(r.randint(2, 8)))

    def lookup(self) -> tuple[str, str, dict[str, Any]]:
        """A tool call's id, the order it looks up and the record it returns."""
        r = self.rng
        call_id = f"call_{r.getrandbits(96):024x}"
        order = f"A-{r.randint(10_000, 99_999)}"
        record = {
            "order_id": order,
            "status": r.choice(["shipped", "in transit", "delivered", "held at depot"]),
            "carrier": r.choice(CARRIERS),
            "tracking": f"{r.getrandbits(40):010X}",
            "items": [
                {"sku": f"SKU-{r.randint(1000, 9999)}", "name": r.choice(ITEMS), "qty": 1}
                for _ in range(r.randint(1, 3))
            ],
            "ship_to": {"city": r.choice(CITIES), "postcode": f"{r.randint(1000, 99999)}"},
            "events": [
                f"2025-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} {e}"
                for e in ("label created", "picked up", "arrived at hub")
            ],
        }
        return call_id, order, record

    @abstractmethod
    def user(self) -> M: ...

    @abstractmethod
    def answer(self) -> M: ...

    @abstractmethod
    def tool_loop(self) -> list[M]:
        """An assistant's tool call, its result and the answer."""

    def turn(self, allow_tools: bool = True) -> list[M]:
        """One finished turn: 2 messages, or 4 with a tool loop (every fourth turn)."""
        self.turns += 1
        user = self.user()
        if allow_tools and self.turns % 4 == 0:
            return [user, *self.tool_loop()]
        return [user, self.answer()]

    def history(self, n: int) -> list[M]:
        """Exactly ``n`` messages (``n`` even) of finished turns."""
        out: list[M] = []
        while len(out) < n:
            out.extend(self.turn(allow_tools=n - len(out) >= 4))
        return out
