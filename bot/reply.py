"""What a handler returns: a reply to the sender and pushes to others, all by template name."""
from __future__ import annotations

from dataclasses import dataclass, field


def show_target(channel: str, target: str) -> str:
    """A target as logs and the command line show it: a group robot's key is a secret (whoever
    has it can post to the group), so only its last 4 characters are shown."""
    if channel == "webhook":
        return f"webhook:…{target[-4:] if len(target) > 4 else ''}"
    if channel == "response_url":  # its query string is a one-use code: only the path is shown
        return f"response_url:{target.split('?', 1)[0]}"
    return f"{channel}:{target}"


@dataclass(frozen=True)
class Target:
    """Where an outbound message goes: a user (app), an app chat, or a group robot."""

    channel: str  # "app" | "appchat" | "webhook" | "response_url" (the smart robot's answer to one message)
    id: str

    def __str__(self) -> str:
        return show_target(self.channel, self.id)


@dataclass(frozen=True)
class Button:
    """A button on a decision card: its label and the command a tap stands for, as typed
    ("同意延期 D3"). `words`: the command needs words after it (退回 D3 <意见>), which the tap asks for."""

    label: str
    command: str
    words: str = ""  # what to ask for ("退回意见"); "" for a command complete as it is


@dataclass
class Card:
    """A 1:1 push that asks for a decision, as a WeCom template card (bot/cards.py); elsewhere the
    push's text. `subject` names the decision ("D3:extend"); a Reply's `settles` closes it."""

    template: str  # bot/templates/card_*.j2: the card's title, description and fields
    subject: str
    buttons: list[Button]


@dataclass
class Push:
    target: Target
    template: str
    data: dict = field(default_factory=dict)
    mentions: list[str] = field(default_factory=list)  # userids to @
    markdown: bool = True  # False: plain text (2048-byte parts instead of 4096)
    file: dict | None = None  # a file message: how to generate it at send time (see bot/export.py)
    filename: str = ""
    image: bool = False  # with `file`: an image message (a PNG generated at send time) instead of a file
    key: str = ""  # idempotency suffix; the caller's prefix makes it unique
    card: Card | None = None  # to a person 1:1 (channel "app"), with [wecom] cards: a template card


@dataclass
class Reply:
    template: str
    data: dict = field(default_factory=dict)
    pushes: list[Push] = field(default_factory=list)
    # Decisions this reply took: (card subject, data for card_outcome.j2); their cards then show the outcome.
    settles: list[tuple[str, dict]] = field(default_factory=list)


class UserError(Exception):
    """A request the bot cannot act on: nothing is written, the user gets this template."""

    def __init__(self, template: str, **data):
        super().__init__(template)
        self.template = template
        self.data = data
