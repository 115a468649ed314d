"""Decision cards: a WeCom template card of type button_interaction (发送应用消息 → 模板卡片消息) built
from a Card (bot/reply.py), and what a tap on one of its buttons stands for.

A card's text comes from its template (bot/templates/card_*.j2), one field a line:

    title: 督办单 D3 申请延期          main_title.title
    desc: 机电工程系 · 王五             main_title.desc
    quote: 等待上级批复                 quote_area.quote_text (the request's own words)
    field: 期限 | 2026-03-25 → 04-10     horizontal_content_list (keyname | value)
    text: 请审核                        sub_title_text

Everything is cut to WeCom's documented limits (LIMITS); tests/fake_wecom.py checks the same.
A button's key is what its tap means: "do|同意延期 D3" is that command as typed; "ask|退回 D3|退回意见"
asks for the words first, and the person's next message completes the command.
"""
from __future__ import annotations

import hashlib
import re
from datetime import timedelta

from bot.reply import Button, Card

# characters (bytes where named); from WeCom's 模板卡片消息 (button_interaction) reference
LIMITS = {"source": 13, "title": 36, "desc": 44, "quote": 160, "text": 160, "keyname": 5, "value": 30,
          "fields": 6, "buttons": 6, "button": 10, "key_bytes": 1024, "task_id_bytes": 128}
RESPONSE_CODE_TTL = timedelta(hours=72)  # a card's response_code updates it once, within this
_TASK_ID = re.compile(r"[^0-9A-Za-z_\-@]")
_LINE = re.compile(r"^(title|desc|quote|field|text):\s?(.*)$")


def cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def task_id(subject: str, key: str) -> str:
    """A task_id unique in the app (digits, letters and _-@, at most 128 bytes) for one card: the
    decision's subject and a digest of the outbox key it is sent under."""
    return f"{_TASK_ID.sub('_', subject)[:80]}-{hashlib.sha1(key.encode()).hexdigest()[:20]}"


def button_key(button: Button) -> str:
    return f"ask|{button.command}|{button.words}" if button.words else f"do|{button.command}"


def parse_key(key: str) -> tuple[str, str, str]:
    """("do" | "ask", the command, the words to ask for); ValueError for a key this bot never made."""
    parts = key.split("|")
    if parts[0] == "do" and len(parts) == 2 and parts[1]:
        return "do", parts[1], ""
    if parts[0] == "ask" and len(parts) == 3 and parts[1] and parts[2]:
        return "ask", parts[1], parts[2]
    raise ValueError(f"not a card key: {key[:40]!r}")


def build(text: str, card: Card, task: str, source: str) -> dict:
    """The template_card object of a button_interaction card: `text` is its rendered template."""
    fields: dict = {"title": "", "desc": "", "quote": "", "text": ""}
    rows = []
    for line in text.splitlines():
        found = _LINE.match(line.strip())
        if not found:
            continue
        name, value = found.groups()
        if name == "field":
            keyname, _, val = value.partition("|")
            if keyname.strip() and val.strip():
                rows.append({"keyname": cut(keyname, LIMITS["keyname"]), "value": cut(val, LIMITS["value"])})
        else:
            fields[name] = " ".join(filter(None, [fields[name], value.strip()]))
    out: dict = {"card_type": "button_interaction", "main_title": {"title": cut(fields["title"], LIMITS["title"])},
                 "task_id": task}
    if source:
        out["source"] = {"desc": cut(source, LIMITS["source"])}
    if fields["desc"]:
        out["main_title"]["desc"] = cut(fields["desc"], LIMITS["desc"])
    if fields["quote"]:
        out["quote_area"] = {"type": 0, "quote_text": cut(fields["quote"], LIMITS["quote"])}
    if fields["text"]:
        out["sub_title_text"] = cut(fields["text"], LIMITS["text"])
    if rows:
        out["horizontal_content_list"] = rows[:LIMITS["fields"]]
    out["button_list"] = [{"type": 0, "text": cut(b.label, LIMITS["button"]), "style": 1 if i == 0 else 2,
                           "key": button_key(b)} for i, b in enumerate(card.buttons[:LIMITS["buttons"]])]
    return out


def as_text(card: dict) -> list[str]:
    """A card's lines as the console prints them (title, description, quote, fields, buttons)."""
    title = card["main_title"]
    lines = [f"【{title['title']}】" + (f" {title['desc']}" if title.get("desc") else "")]
    if card.get("quote_area"):
        lines.append(f"「{card['quote_area']['quote_text']}」")
    if card.get("sub_title_text"):
        lines.append(card["sub_title_text"])
    lines += [f"{row['keyname']}：{row['value']}" for row in card.get("horizontal_content_list", [])]
    lines.append(" ".join(f"[{b['text']}]" for b in card["button_list"]))
    return lines
