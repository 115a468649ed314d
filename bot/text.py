"""Input normalisation for phone IMEs and message splitting for WeCom's size limits."""
from __future__ import annotations

import re
import unicodedata

_PREFIX = re.compile(r"^[/#\s]+")
_SEPARATORS = re.compile(r"[\s,;:、，；：]+")


def normalize(text: str) -> str:
    """Full-width to half-width (NFKC), ideographic spaces to spaces, strip, drop a leading / or #."""
    text = unicodedata.normalize("NFKC", text or "")
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u3000", " ")
    return _PREFIX.sub("", text.strip())


def split_args(text: str, count: int) -> tuple[list[str], str]:
    """Take `count` leading tokens (separated by spaces or , ; : 、) and return them with the rest.

    The rest keeps its own line breaks, so content may run over several lines.
    """
    tokens: list[str] = []
    rest = text.lstrip(" ,;:、，；：\n\t")
    while len(tokens) < count and rest:
        m = _SEPARATORS.search(rest)
        if m is None:
            tokens.append(rest)
            rest = ""
        else:
            tokens.append(rest[: m.start()])
            rest = rest[m.end():]
    return tokens, rest.strip()


def parse_percent(token: str) -> int | None:
    m = re.fullmatch(r"(\d{1,3})(?:\.\d+)?\s*%?", token.strip())
    if not m:
        return None
    value = int(m.group(1))
    return value if 0 <= value <= 100 else None


def parse_code(token: str, prefix: str) -> str | None:
    """Accept t12, T12 or 12 for a T-code."""
    m = re.fullmatch(rf"(?i:{prefix})?\s*(\d+)", token.strip())
    return f"{prefix}{int(m.group(1))}" if m else None


def split_message(content: str, limit: int) -> list[str]:
    """Split into chunks of at most `limit` UTF-8 bytes, at line breaks.

    A single line longer than the limit is cut at a character boundary: nothing is lost.
    """
    chunks: list[str] = []
    current = ""
    for line in content.split("\n"):
        while len(line.encode()) > limit:
            head = line.encode()[:limit].decode("utf-8", "ignore")
            if current:
                chunks.append(current)
                current = ""
            chunks.append(head)
            line = line[len(head):]
        candidate = f"{current}\n{line}" if current else line
        if current and len(candidate.encode()) > limit:
            chunks.append(current)
            current = line
        else:
            current = candidate
    if current or not chunks:
        chunks.append(current)
    return chunks
