"""The page's HTML, built from plain data (no aiohttp here). Every text that comes from storage or a request
(repository names, tags, annotations, artifact types, digests, the host) goes through `esc`, and only there:
a function here returns markup; one that takes text escapes it."""

from __future__ import annotations

import datetime
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from k3sreg.server.stats import Totals
from k3sreg.storage.browse import Referrer, RepoSummary, TagRow

_TAGS_SHOWN = 6


def esc(text: object) -> str:
    """`text` as HTML text or attribute value (quotes included)."""
    return html.escape(str(text), quote=True)


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # unreachable


def ago(when: float | None, now: float) -> str:
    """A time as '5 min ago', with the exact UTC time as its tooltip; '—' when unknown."""
    if when is None:
        return '<span class="muted">—</span>'
    delta = max(0.0, now - when)
    if delta < 60:
        text = "just now"
    elif delta < 3600:
        text = f"{int(delta // 60)} min ago"
    elif delta < 86400:
        text = f"{int(delta // 3600)} h ago"
    else:
        text = f"{int(delta // 86400)} days ago"
    exact = datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f'<time datetime="{esc(exact)}" title="{esc(exact)}">{esc(text)}</time>'


@dataclass(frozen=True, slots=True)
class Frame:
    """What every page shares: the page's base path (no trailing slash: "" at the root), and the registry
    name to pull from (http.host or the request's host)."""

    base: str
    registry: str
    title: str = "k3sreg"

    def url(self, path: str, **query: object) -> str:
        q = urlencode({k: v for k, v in query.items() if v not in (None, "", 1)})
        return f"{self.base}{path}" + (f"?{q}" if q else "")

    def repo_url(self, name: str, **query: object) -> str:
        return self.url(f"/repositories/{quote(name)}", **query)


def page(frame: Frame, title: str, body: str) -> str:
    """A whole document around `body` (markup)."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · k3sreg</title>"
        f'<link rel="stylesheet" href="{esc(frame.url("/_static/page.css"))}">'
        f'<link rel="icon" href="{esc(frame.url("/_static/icon.svg"))}" type="image/svg+xml">'
        "</head><body>"
        f'<header><a class="brand" href="{esc(frame.url("/"))}">k3sreg</a>'
        f'<span class="host">{esc(frame.registry)}</span></header>'
        f"<main>{body}</main>"
        f'<script src="{esc(frame.url("/_static/page.js"))}" defer></script>'
        "</body></html>"
    )


def pull_command(frame: Frame, repo: str, tag: str) -> str:
    """A pull command with a button that copies it."""
    command = f"docker pull {frame.registry}/{repo}:{tag}"
    return (f'<span class="pull"><code>{esc(command)}</code>'
            f'<button type="button" class="copy" data-copy="{esc(command)}" title="Copy">copy</button></span>')


def cards(totals: Totals, repositories: int, filesystem: tuple[int, int] | None) -> str:
    """The summary: repositories, storage, filesystem, garbage collection, requests."""
    items = [("Repositories", f"{repositories:,}", ""),
             ("Storage", human_bytes(totals.blob_bytes), f"{int(totals.blobs):,} blobs")]
    if filesystem is not None:
        size, free = filesystem
        items.append(("Filesystem", f"{human_bytes(size - free)} used", f"{human_bytes(free)} free of "
                                                                          f"{human_bytes(size)}"))
    items.append(("Garbage collection", f"{int(totals.gc_runs):,} runs",
                  f"{human_bytes(totals.gc_freed)} freed, {int(totals.gc_removed):,} objects"))
    items.append(("Requests", f"{int(totals.requests):,}", "since start"))
    return '<section class="cards">' + "".join(
        f'<div class="card" data-card="{esc(label.lower())}"><div class="label">{esc(label)}</div>'
        f'<div class="value">{esc(value)}</div><div class="sub">{esc(sub)}</div></div>'
        for label, value, sub in items) + "</section>"


def upstreams(totals: Totals) -> str:
    """Per upstream: hit ratio, bytes saved and fetched, fills in progress."""
    if not totals.upstreams:
        return ""
    rows = []
    for name, t in sorted(totals.upstreams.items()):
        ratio = f"{t.hit_ratio:.0%}" if t.hit_ratio is not None else "—"
        rows.append(f'<tr data-upstream="{esc(name)}"><td>{esc(name)}</td><td class="num">{esc(ratio)}</td>'
                    f'<td class="num">{int(t.hits):,} / {int(t.requests):,}</td>'
                    f'<td class="num">{esc(human_bytes(t.saved))}</td><td class="num">{esc(human_bytes(t.fetched))}'
                    f'</td><td class="num">{int(t.fills):,}</td></tr>')
    return ('<section><h2>Upstreams</h2><table class="grid"><thead><tr><th>Upstream</th><th>Hit ratio</th>'
            '<th>Hits / requests</th><th>Bytes saved</th><th>Bytes fetched</th><th>Fills now</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></section>')


@dataclass(frozen=True, slots=True)
class Pages:
    """A page of a longer list: `number` (from 1) of `count`, `total` items."""

    number: int
    count: int
    total: int

    @staticmethod
    def of(total: int, per_page: int, asked: int) -> Pages:
        count = max(1, -(-total // per_page))
        return Pages(min(max(asked, 1), count), count, total)


def pager(pages: Pages, url_of: Callable[[int], str]) -> str:
    """Previous/next links (`url_of(number)` is the address of a page) and where this page is."""
    def link(number: int, text: str, rel: str) -> str:
        return f'<a rel="{rel}" href="{esc(url_of(number))}">{esc(text)}</a>'

    parts = [link(pages.number - 1, "← previous", "prev") if pages.number > 1 else "",
             f'<span class="where">page {pages.number} of {pages.count}</span>',
             link(pages.number + 1, "next →", "next") if pages.number < pages.count else ""]
    return f'<nav class="pager">{"".join(parts)}</nav>'


def repo_list(frame: Frame, rows: Sequence[RepoSummary], pages: Pages, query: str, now: float) -> str:
    """The repository list (the part that search replaces while one types)."""
    if not rows:
        empty = "No repository matches." if query else "No repositories yet: push an image to see it here."
        body = f'<p class="empty">{esc(empty)}</p>'
    else:
        trs = []
        for r in rows:
            shown = "".join(f'<span class="tag">{esc(t)}</span>' for t in r.tags[:_TAGS_SHOWN])
            more = f'<span class="more">+{len(r.tags) - _TAGS_SHOWN} more</span>' if len(r.tags) > _TAGS_SHOWN else ""
            pull = pull_command(frame, r.name, r.newest) if r.newest else '<span class="muted">no tags</span>'
            trs.append(f'<tr class="repo" data-repo="{esc(r.name)}"><td><a href="{esc(frame.repo_url(r.name))}">'
                       f'{esc(r.name)}</a></td><td class="num">{len(r.tags):,}</td><td>{shown}{more}</td>'
                       f"<td>{ago(r.changed, now)}</td><td>{pull}</td></tr>")
        body = ('<table class="grid"><thead><tr><th>Repository</th><th>Tags</th><th></th><th>Changed</th>'
                f'<th>Pull</th></tr></thead><tbody>{"".join(trs)}</tbody></table>')
    where = f'<p class="count">{pages.total:,} repositor{"y" if pages.total == 1 else "ies"}' + \
        (f" matching “{esc(query)}”" if query else "") + "</p>"
    return f'<div id="repos">{where}{body}{pager(pages, lambda n: frame.url("/", q=query, page=n))}</div>'


def search_box(frame: Frame, query: str) -> str:
    return (f'<form class="search" method="get" action="{esc(frame.url("/"))}" role="search">'
            f'<input id="q" type="search" name="q" value="{esc(query)}" placeholder="Search repositories" '
            'autocomplete="off" aria-label="Search repositories"><button type="submit">Search</button></form>')


def _referrers(found: Sequence[Referrer]) -> str:
    if not found:
        return '<span class="muted">—</span>'
    items = []
    for r in found:
        notes = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in sorted(r.annotations.items()))
        items.append(f'<li class="referrer"><span class="atype">{esc(r.artifact_type)}</span> '
                     f'<code title="{esc(r.digest)}">{esc(short(str(r.digest)))}</code> '
                     f'<span class="muted">{esc(human_bytes(r.size))}</span>'
                     + (f'<ul class="notes">{notes}</ul>' if notes else "") + "</li>")
    return f'<ul class="referrers">{"".join(items)}</ul>'


def short(digest: str) -> str:
    alg, _, hexd = digest.partition(":")
    return f"{alg}:{hexd[:12]}" if hexd else digest


def tag_table(frame: Frame, repo: str, rows: Sequence[TagRow], now: float, delete_token: str | None) -> str:
    """The tags of one repository; `delete_token` (the form token) when the caller may delete tags."""
    trs = []
    for t in rows:
        platforms = "".join(f'<li><span class="platform">{esc(p.name or "—")}</span> '
                            f'<span class="num">{esc(human_bytes(p.size))}</span></li>' for p in t.platforms)
        kind = esc(t.kind) + (f'<div class="atype">{esc(t.artifact_type)}</div>' if t.artifact_type else "")
        notes = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in sorted(t.annotations.items()))
        digest = f'<code title="{esc(t.digest)}">{esc(short(str(t.digest)))}</code>' if t.digest else "—"
        delete = ""
        if delete_token is not None:
            delete = (f'<form method="post" action="{esc(frame.url("/_delete"))}" class="delete">'
                      f'<input type="hidden" name="repository" value="{esc(repo)}">'
                      f'<input type="hidden" name="tag" value="{esc(t.tag)}">'
                      f'<input type="hidden" name="form_token" value="{esc(delete_token)}">'
                      f'<button type="submit" data-confirm="Delete tag {esc(t.tag)}?">delete</button></form>')
        trs.append(f'<tr class="tagrow" data-tag="{esc(t.tag)}"><td class="tagname">{esc(t.tag)}</td><td>{digest}'
                   f'</td><td>{kind}' + (f'<ul class="notes">{notes}</ul>' if notes else "") +
                   f'</td><td><ul class="platforms">{platforms}</ul></td><td>{ago(t.pushed, now)}</td>'
                   f"<td>{ago(t.pulled, now)}</td><td>{_referrers(t.referrers)}</td>"
                   f"<td>{pull_command(frame, repo, t.tag)}</td><td>{delete}</td></tr>")
    if not trs:
        return '<p class="empty">This repository has no tags.</p>'
    return ('<table class="grid tags"><thead><tr><th>Tag</th><th>Digest</th><th>Kind</th><th>Size per platform</th>'
            '<th>Pushed</th><th>Pulled</th><th>Referrers</th><th>Pull</th><th></th></tr></thead>'
            f'<tbody>{"".join(trs)}</tbody></table>')


def message(text: str, kind: str = "note") -> str:
    return f'<p class="{esc(kind)}">{esc(text)}</p>'
