"""Draw the decision cards for the README (docs/cards.png): the bot's real card payloads, from a
small seeded campaign in console mode, laid out roughly as WeCom shows a button_interaction card,
and screenshotted with headless Chromium.

    .venv/bin/python docs/draw_cards.py [--chromium /usr/bin/chromium]
"""
from __future__ import annotations

import argparse
import html
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from sqlmodel import Session, select  # noqa: E402

from bot.app import Application  # noqa: E402
from bot.clock import FixedClock  # noqa: E402
from conftest import at, make_config, seed  # noqa: E402
from db.models import Outbox  # noqa: E402
from jobs import JobQueue  # noqa: E402

STYLE = """
body { margin: 0; padding: 16px; background: #ededed; font-family: 'Noto Sans CJK SC', sans-serif; width: 1180px; }
.grid { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.card { background: #fff; border-radius: 8px; width: 370px; padding: 14px 16px 10px; box-sizing: border-box; }
.who { color: #888; font-size: 12px; margin-bottom: 6px; }
.source { color: #888; font-size: 13px; margin-bottom: 8px; }
.title { font-size: 17px; font-weight: 600; color: #222; }
.desc { font-size: 13px; color: #888; margin: 4px 0 8px; }
.quote { background: #f6f6f6; border-left: 3px solid #ddd; padding: 6px 8px; font-size: 13px; color: #555; margin-bottom: 8px; }
.sub { font-size: 13px; color: #555; margin-bottom: 8px; }
.row { display: flex; font-size: 14px; margin: 4px 0; }
.key { color: #888; width: 72px; flex: none; }
.buttons { display: flex; gap: 8px; margin-top: 12px; border-top: 1px solid #eee; padding-top: 10px; }
.btn { flex: 1; text-align: center; font-size: 14px; padding: 7px 0; border-radius: 4px; border: 1px solid #ddd; color: #333; }
.btn.s1 { background: #2f6fe4; color: #fff; border-color: #2f6fe4; }
.done { flex: 1; text-align: center; font-size: 14px; padding: 7px 0; color: #999; background: #f3f3f3; border-radius: 4px; }
"""


def card_html(card: dict, who: str, outcome: str = "") -> str:
    e = html.escape
    parts = [f'<div class="card"><div class="who">发给 {e(who)}</div>']
    if card.get("source"):
        parts.append(f'<div class="source">{e(card["source"]["desc"])}</div>')
    parts.append(f'<div class="title">{e(card["main_title"]["title"])}</div>')
    if card["main_title"].get("desc"):
        parts.append(f'<div class="desc">{e(card["main_title"]["desc"])}</div>')
    if card.get("quote_area"):
        parts.append(f'<div class="quote">{e(card["quote_area"]["quote_text"])}</div>')
    if card.get("sub_title_text"):
        parts.append(f'<div class="sub">{e(card["sub_title_text"])}</div>')
    for row in card.get("horizontal_content_list", []):
        parts.append(f'<div class="row"><span class="key">{e(row["keyname"])}</span><span>{e(row["value"])}</span></div>')
    if outcome:
        buttons = f'<div class="done">{e(outcome)}</div>'
    else:
        buttons = "".join(f'<div class="btn s{b["style"]}">{e(b["text"])}</div>' for b in card["button_list"])
    parts.append(f'<div class="buttons">{buttons}</div></div>')
    return "".join(parts)


def cards_of(app: Application) -> list[tuple[Outbox, dict]]:
    with Session(app.engine) as s:
        return [(r, json.loads(r.payload)["card"]) for r in s.exec(select(Outbox).order_by(Outbox.id))
                if r.msgtype == "template_card"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", default=str(ROOT / "docs" / "cards.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clock = FixedClock(at(2026, 3, 20, 10, 0))
        app = Application(make_config(f"sqlite:///{tmp}/d.db", org={"name": "XX职业技术学院"},
                                      broadcast={"chat_id": "chat-all"}), clock=clock)
        app.migrate()
        seed(app)
        say = iter(range(1, 100))
        app.handle_message("admin", "督办 图书馆,机电工程系 3月28日 报送自习室延长开放方案及安全预案", msg_id=str(next(say)))
        app.handle_message("sun", "延期 D1 4月10日 等待上级批复安全预案", msg_id=str(next(say)))
        app.handle_message("zhang", "反馈 D1 方案已报送效能办，预案随附", msg_id=str(next(say)))
        app.handle_message("sun", "问题 自习室夜间无人值守 措施=增设值班 时限=4月30日", msg_id=str(next(say)))
        app.handle_message("sun", "销号 P1 已排定值班表并公示", msg_id=str(next(say)))
        clock.set(at(2026, 4, 1, 10))
        JobQueue(app).run_at("monthly_ranking", clock.now())
        shown = {}
        for row, card in cards_of(app):
            title = card["main_title"]["title"].split(" · ")[-1] + card["main_title"]["title"][:6]
            shown.setdefault(title, (row, card))
        tiles = [card_html(card, row.target) for row, card in shown.values()]
        # the 签收 card once decided, as every recipient's card then reads
        row, card = next(iter(shown.values()))
        tiles.append(card_html(card, row.target, "已签收 · 张三 03-20 10:05"))
        page = Path(tmp) / "cards.html"
        page.write_text(f'<html><head><meta charset="utf-8"><style>{STYLE}</style></head><body>'
                        f'<div class="grid">{"".join(tiles)}</div></body></html>', encoding="utf-8")
        subprocess.run([args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--screenshot={args.out}", "--window-size=1212,625", page.as_uri()],
                       check=True, capture_output=True)
        app.engine.dispose()
    print(args.out)


if __name__ == "__main__":
    main()
