"""Every route, for every role (no session, 成员, 负责人, 分管领导, 管理员), with hostile path, query and
form parameters: each is refused cleanly (a 4xx, or the page as if the parameter were not there),
never a 500, never a traceback in the log."""
from __future__ import annotations

import logging
import re
from urllib.parse import quote

import httpx
from starlette.routing import Mount, Route

from conftest import add_overseer
from test_web import fill, signed_in, site  # noqa: F401  (site: the fixture)

HUGE = "9" * 20
VALUES = [HUGE, "2147483648", "-1", "0", "1e3", "²", "٣", " 1", "1;DROP TABLE unit", "../admin", "%00", "%FF",
          "%F0%9F%98%80", "x" * 5000, "[]", "{}"]
QUERY_KEYS = ["code", "state", "token", "id", "unit_id", "msg_signature", "timestamp", "nonce", "echostr"]
FORM_KEYS = ["id", "all", "month", "action", "reason", "task", "percent", "text", "nonce"]


def routes(asgi, prefix: str = ""):
    """(method, path template) of every route, mounted ones included."""
    for route in asgi.routes:
        if isinstance(route, Mount):
            yield from routes(route.app, prefix + route.path)
        elif isinstance(route, Route):
            for method in sorted(route.methods - {"HEAD"}):
                yield method, prefix + route.path


def hostile_paths(template: str) -> list[str]:
    if "{" not in template:
        return [template, template + "/" + quote("%00"), template + "/" + "x" * 300]
    return [re.sub(r"\{[^}]+\}", value, template) for value in VALUES]


def test_every_route_refuses_hostile_parameters_cleanly_for_every_role(site, fake, caplog):
    app, server = site
    add_overseer(app)
    fill(app)
    from bot.wecom.callback import build_asgi

    table = sorted(set(routes(build_asgi(app))), key=lambda r: (r[1] == "/web/logout", r))  # logout last
    assert ("GET", "/web/unit/{unit_id:int}") in table and ("POST", "/web/logout") in table
    browsers = {"nobody": httpx.Client(base_url=server.base, timeout=30)}
    browsers.update({u: signed_in(server, fake, u) for u in ("li", "zhang", "vp", "admin")})
    caplog.set_level(logging.ERROR)
    seen: dict[int, int] = {}
    for value in (HUGE, "2147483648", "0"):  # an admin sees every unit: an id no database holds is not found
        resp = browsers["admin"].get(f"/web/unit/{value}")
        assert resp.status_code == 404 and "页面不存在" in resp.text, value
    for who, client in browsers.items():
        page = client.get("/web/me").text
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        csrf = found.group(1) if found else ""
        for method, template in table:
            for path in hostile_paths(template):
                queries = [f"{key}={value}" for key in QUERY_KEYS for value in VALUES[:6]]
                for query in ("", "&".join(queries[:40]), "&".join(queries[40:]), "id=1&id=" + HUGE):
                    url = f"{path}?{query}" if query else path
                    if method == "GET":
                        resp = client.get(url)
                    else:
                        form = {"csrf": csrf, **{k: VALUES[:8] for k in FORM_KEYS}}
                        resp = client.post(url, data=form)
                        resp = resp if resp.status_code != 403 else client.post(url, data={"csrf": csrf})
                    assert resp.status_code < 500 and "Internal Server Error" not in resp.text, (who, method, url)
                    seen[resp.status_code] = seen.get(resp.status_code, 0) + 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert {400, 404}.issubset(seen), seen
