"""Input normalisation for phone IMEs and message splitting for WeCom's size limits."""
from __future__ import annotations

import re
import unicodedata

_PREFIX = re.compile(r"^[/#\s]+")
_SEPARATORS = re.compile(r"[\s,;:、，；：]+")


def normalize_map(text: str) -> tuple[str, list[int]]:
    """NFKC per character (full-width to half-width), ideographic space to space, CRLF to LF.

    Returns the normalised text and, for each of its positions (plus its end), the position in
    the original text, so that free content can be taken from what the user typed, unchanged.
    """
    text = text or ""
    if "\r" not in text and "\u3000" not in text and unicodedata.is_normalized("NFKC", text):
        return text, list(range(len(text) + 1))  # the usual case: nothing to change
    return _normalize_each(text)


def _normalize_each(text: str) -> tuple[str, list[int]]:
    """normalize_map, one character at a time."""
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        if ch == "\r":
            continue
        n = " " if ch == "\u3000" else unicodedata.normalize("NFKC", ch)
        out.append(n)
        index.extend([i] * len(n))
    index.append(len(text))
    return "".join(out), index


def normalize(text: str) -> str:
    """Normalised (see normalize_map), stripped, without a leading / or #."""
    return _PREFIX.sub("", normalize_map(text)[0].strip())


def command_rest(text: str, norm_start: int, norm_map: list[int]) -> str:
    """The original text from a position in its normalised form."""
    return text[norm_map[norm_start]:].replace("\r\n", "\n").replace("\r", "\n")


def split_args(text: str, count: int) -> tuple[list[str], str]:
    """Take `count` leading tokens (normalised; separated by spaces or , ; : 、) and return them
    with the rest exactly as typed, line breaks included, so content may run over several lines."""
    norm, index = normalize_map(text)
    tokens: list[str] = []
    pos = 0
    lead = _SEPARATORS.match(norm)
    if lead:
        pos = lead.end()
    while len(tokens) < count and pos < len(norm):
        m = _SEPARATORS.search(norm, pos)
        end = m.start() if m else len(norm)
        tokens.append(norm[pos:end])
        pos = m.end() if m else len(norm)
    rest = command_rest(text, pos, index) if pos < len(norm) else ""
    return tokens, "" if blank(rest) else rest.strip()


def blank(text: str) -> bool:
    """Nothing a reader would see: only spaces, line breaks and invisible characters (zero-width
    spaces and joiners, byte-order marks: Unicode's format and control categories)."""
    return all(ch.isspace() or unicodedata.category(ch) in ("Cf", "Cc", "Zs") for ch in text)


def parse_percent(token: str) -> int | None:
    m = re.fullmatch(r"(\d{1,3})\s*%?", token.strip())
    if not m:
        return None
    value = int(m.group(1))
    return value if 0 <= value <= 100 else None


def parse_code(token: str, prefix: str) -> str | None:
    """Accept t12, T12 or 12 for a T-code (nine digits at most: no code is longer)."""
    m = re.fullmatch(rf"(?i:{prefix})?\s*(\d{{1,9}})", token.strip())
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
