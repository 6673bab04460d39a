"""The dashboard's HTML: one server-rendered page, plain CSS and inline SVG, no scripts.

It refreshes itself (a meta refresh), so it stays live without JavaScript or a build step.
Everything shown is escaped; nothing secret is ever on it (key names and money only).
"""

from __future__ import annotations

import html
import time

from capgate.learning.report import SiteView
from capgate.model import format_money
from capgate.overview import Overview, SolverView, TaskView

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:24px;align-items:center}
header h1{font-size:18px;margin:0 auto 0 0}
header form{margin:0}
main{padding:16px 20px;display:grid;gap:16px;
 grid-template-columns:repeat(auto-fit,minmax(460px,1fr))}
section{background:#fff;border-radius:6px;padding:12px 16px;box-shadow:0 1px 2px #0002}
h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}
td,th{padding:3px 6px;text-align:left;border-bottom:1px solid #eee;
 font-variant-numeric:tabular-nums}
th{font-weight:600;color:#555}
.num{text-align:right}
.bar{background:#dde3ee;height:8px;border-radius:4px;min-width:60px}
.bar span{display:block;height:8px;border-radius:4px;background:#3b7dd8}
.open{color:#c0392b;font-weight:600}.half-open{color:#d68910}.closed{color:#1e8449}
.failed{color:#c0392b}.ready{color:#1e8449}
.login{max-width:360px;margin:80px auto;background:#fff;padding:24px;border-radius:6px}
.login input{width:100%;padding:6px;margin:8px 0;box-sizing:border-box}
.error{color:#c0392b}
"""


def login_page(error: str = "") -> bytes:
    """The form that asks for the admin key."""
    message = f'<p class="error" id="login-error">{html.escape(error)}</p>' if error else ""
    return _page(
        "capgate — log in",
        '<form class="login" method="post" action="/dashboard/login">'
        "<h2>capgate dashboard</h2>"
        f"{message}"
        '<label for="key">Admin key</label>'
        '<input id="key" name="key" type="password" autocomplete="current-password" autofocus>'
        '<button id="login" type="submit">Log in</button>'
        "<p><small>The admin key is <code>admin_key</code> in the config, or the one in"
        " <code>DATA/admin.key</code>.</small></p></form>",
        refresh=0,
    )


def dashboard_page(overview: Overview, refresh: int) -> bytes:
    """The whole dashboard for one overview."""
    total = sum(overview.tasks_per_minute)
    header = (
        "<header><h1>capgate</h1>"
        f'<span>queue <b id="queue-depth">{overview.queue_depth}</b></span>'
        f"<span>tasks, last 30 min <b>{total}</b></span>"
        f"<span>{html.escape(time.strftime('%H:%M:%S', time.gmtime(overview.now)))} UTC</span>"
        '<form method="post" action="/dashboard/logout"><button>Log out</button></form>'
        "</header>"
    )
    sections = [
        _section("Tasks per minute (last 30 min)", _chart(overview.tasks_per_minute)),
        _section("Solvers and providers", _solvers(overview.solvers), "solvers"),
        _section("Spend per key", _keys(overview), "keys"),
        _section("Sites: learned models", _sites(overview.sites), "sites"),
        _section("Recent failures", _tasks(overview.failures, errors=True), "failures"),
        _section("Recent tasks", _tasks(overview.recent, errors=False), "tasks"),
    ]
    return _page("capgate dashboard", header + "<main>" + "".join(sections) + "</main>", refresh)


def _page(title: str, body: str, refresh: int) -> bytes:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh > 0 else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"{meta}<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    ).encode()


def _section(title: str, content: str, ident: str = "") -> str:
    attribute = f' id="{ident}"' if ident else ""
    return f"<section{attribute}><h2>{html.escape(title)}</h2>{content}</section>"


def _chart(counts: list[int]) -> str:
    """Bars for tasks per minute, oldest on the left, as inline SVG."""
    width, height, gap = 600, 120, 2
    peak = max(counts) or 1
    bar = width / len(counts)
    rects = []
    for i, count in enumerate(counts):
        h = round(count / peak * (height - 14))
        x = round(i * bar, 1)
        rects.append(
            f'<rect x="{x}" y="{height - h}" width="{round(bar - gap, 1)}" height="{h}"'
            f' fill="#3b7dd8"><title>{count} tasks, {len(counts) - i} min ago</title></rect>'
        )
    return (
        f'<svg id="chart" viewBox="0 0 {width} {height}" width="100%" role="img"'
        f' aria-label="tasks per minute, peak {peak}">'
        f'<text x="2" y="11" font-size="11" fill="#555">peak {peak}/min</text>'
        + "".join(rects)
        + "</svg>"
    )


def _solvers(solvers: list[SolverView]) -> str:
    rows = []
    for s in solvers:
        ratio = s.success_ratio
        success = (
            f'<div class="bar"><span style="width:{round(ratio * 100)}%"></span></div>'
            f"{round(ratio * 100)}%"
            if ratio is not None
            else "—"
        )
        rows.append(
            f'<tr data-solver="{html.escape(s.name)}" data-breaker="{s.breaker}">'
            f"<td>{html.escape(s.name)}</td><td>{s.kind}</td>"
            f'<td class="{s.breaker}">{s.breaker}</td>'
            f'<td class="num">{s.answered}</td><td class="num">{s.failed}</td>'
            f'<td>{success}</td><td class="num">{_secs(s.p50_seconds)}</td>'
            f'<td class="num">{_secs(s.p90_seconds)}</td>'
            f'<td class="num">{format_money(s.spend)}</td></tr>'
        )
    return (
        "<table><tr><th>solver</th><th>kind</th><th>breaker</th><th>answered</th>"
        "<th>failed</th><th>success</th><th>p50</th><th>p90</th><th>spend</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _keys(overview: Overview) -> str:
    peak = max((k.spent for k in overview.keys), default=0) or 1
    rows = [
        f'<tr data-key="{k.id}"><td>{k.id}</td><td>{html.escape(k.name)}'
        f"{' (worker)' if k.worker else ''}</td>"
        f'<td class="num">{format_money(k.balance)}</td>'
        f'<td class="num">{format_money(k.spent)}</td>'
        f'<td><div class="bar"><span style="width:{round(k.spent / peak * 100)}%"></span>'
        "</div></td></tr>"
        for k in overview.keys
    ]
    return (
        "<table><tr><th>id</th><th>name</th><th>balance</th><th>spent</th><th></th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _sites(sites: list[SiteView]) -> str:
    """Per site: labels, its model, held-out and live accuracy, local share, spend saved,
    and the newest line of its history."""
    if not sites:
        return "<p>No site seen yet (learning is off, or no image task named a site).</p>"
    rows = []
    for v in sites:
        last = v.history[0] if v.history else None
        event = (
            f"{last.kind} v{last.version} {time.strftime('%m-%d %H:%M', time.gmtime(last.at))}:"
            f" {last.reason}"
            if last
            else ""
        )
        rows.append(
            f'<tr data-site="{html.escape(v.site)}" data-model="{v.model_version or ""}">'
            f'<td>{html.escape(v.site)}</td><td class="num">{v.labels}</td>'
            f'<td class="num">{"v" + str(v.model_version) if v.model_version else "—"}</td>'
            f'<td class="num">{_share(v.heldout_accuracy)}</td>'
            f'<td class="num">{"—" if v.threshold_coverage is None else v.kept_text()}</td>'
            f'<td class="num">{_share(v.live_accuracy)} ({v.audits};'
            f" {v.reported_wrong} reported)</td>"
            f'<td class="num">{_share(v.local_share)}</td>'
            f'<td class="num">{format_money(v.saved)}</td>'
            f"<td>{html.escape(event)}</td></tr>"
        )
    return (
        "<table><tr><th>site</th><th>labels</th><th>model</th><th>held-out</th>"
        '<th title="the held-out share it answers itself (with agreeing answers)">kept</th>'
        "<th>live (audits)</th><th>local</th><th>saved</th><th>last change</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _tasks(tasks: list[TaskView], *, errors: bool) -> str:
    if not tasks:
        return "<p>None yet.</p>"
    rows = []
    for t in tasks:
        when = time.strftime("%H:%M:%S", time.gmtime(t.created_at))
        last = (
            f"<td>{html.escape(t.error_code or '')}</td>"
            f"<td>{html.escape(t.error_description or '')}</td>"
            if errors
            else f'<td class="num">{t.attempts}</td><td class="num">{_secs(t.seconds)}</td>'
        )
        rows.append(
            f'<tr data-task-id="{t.id}"><td>{t.id}</td><td>{when}</td><td>{t.type}</td>'
            f'<td class="{t.status}">{t.status}</td><td>{html.escape(t.solver or "")}</td>'
            f"{last}</tr>"
        )
    head = "<th>code</th><th>description</th>" if errors else "<th>tries</th><th>time</th>"
    return (
        "<table><tr><th>id</th><th>created</th><th>type</th><th>status</th><th>solver</th>"
        f"{head}</tr>" + "".join(rows) + "</table>"
    )


def _secs(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
