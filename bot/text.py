"""Input normalisation for phone IMEs and message splitting for WeCom's size limits."""
from __future__ import annotations

import re
import unicodedata
from datetime import date

from db.month import Month

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


# Dates and months as people type them: 2026-03-28 (or / .), 2026年3月28日, 3月28日 (日 or 号), 3.28.
_DATE_YMD = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?")
_DATE_MD = re.compile(r"(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?")
_MONTH_YM = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*月?")
_MONTH_M = re.compile(r"(\d{1,2})\s*月")


def parse_date_text(token: str, today: date) -> date | None:
    """A date in one of the forms above; without a year, in today's year. None if it is not one,
    or not a real day, or outside the campaign's years 2000-2100."""
    text = normalize(token)
    if m := _DATE_YMD.fullmatch(text):
        y, mo, d = (int(x) for x in m.groups())
    elif m := _DATE_MD.fullmatch(text):
        y, (mo, d) = today.year, (int(x) for x in m.groups())
    else:
        return None
    if not 2000 <= y <= 2100:
        return None
    try:
        return date(y, mo, d)
    except ValueError:
        return None


def parse_month_text(token: str, year: int) -> Month | None:
    """2026-03 (or / .), 2026年3月, or 3月 (in `year`). None if it is not a month."""
    text = normalize(token)
    if m := _MONTH_YM.fullmatch(text):
        y, mo = (int(x) for x in m.groups())
    elif m := _MONTH_M.fullmatch(text):
        y, mo = year, int(m.group(1))
    else:
        return None
    if not 1 <= mo <= 12 or not 2000 <= y <= 2100:
        return None
    return Month(y, mo)


def split_repeated(text: str, word: re.Pattern) -> list[str]:
    """Cut a message where `word` (a pattern over the normalised text) starts a new command of the
    same kind: "T1 30% a 汇报 T2 20% b" -> ["T1 30% a", "T2 20% b"]. Pieces keep the user's text."""
    norm, index = normalize_map(text)
    pieces, start = [], 0
    for m in word.finditer(norm):
        pieces.append(text[index[start]:index[m.start()]])
        start = m.end()
    pieces.append(text[index[start]:])
    return [p.strip() for p in pieces]


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


# A labelled part of a message ("措施：…", "时限=…"): a label after the start, a space or a mark
# (，；、。 included), then = or : (full-width ones are normalised to these). A label that is not one of
# the command's but looks like a field (ends in 时间, 期限, 措施 …) is named back to the user.
_MARK_BEFORE = r"(?:^|(?<=[\s,;、。]))"
_FIELDISH = r"[\u4e00-\u9fff]{0,6}(?:时间|日期|期限|时限|措施|办法|责任人|负责人|领导|开始|截止)"
MARKS = " \t\n,;、。，；"  # what may stand between labelled parts


def field_pattern(labels) -> re.Pattern:
    """Known labels (longest first, so 整改措施 wins over 措施) or a field-like unknown one."""
    known = "|".join(re.escape(x) for x in sorted(labels, key=len, reverse=True))
    return re.compile(rf"{_MARK_BEFORE}(?:(?P<known>{known})|(?P<other>{_FIELDISH}))\s*[=:]\s*", re.IGNORECASE)


def labelled_fields(text: str, pattern: re.Pattern) -> tuple[str, dict[str, str], list[str]]:
    """The text before the first label (as typed), each known label's value (as typed, up to the
    next label, without the marks between parts) and the field-like labels not understood."""
    norm, index = normalize_map(text)
    # What opens the text is its subject, even if it looks like a label (问题 排班负责人：未落实).
    marks = [m for m in pattern.finditer(norm) if m.group("known") or m.start() > 0]
    fields: dict[str, str] = {}
    unknown = [m.group("other") for m in marks if m.group("other")]
    for m, nxt in zip(marks, [*marks[1:], None]):
        if m.group("known"):
            end = index[nxt.start()] if nxt else len(text)
            fields[m.group("known").lower()] = text[index[m.end()]:end].strip(MARKS)
    head = text[:index[marks[0].start()]] if marks else text
    return head.strip(MARKS), fields, unknown
