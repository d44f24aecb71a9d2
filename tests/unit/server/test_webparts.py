"""Pieces of the web page: its settings, the savings plot, the form token check, and escaping."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from k3sreg.config import parse_settings
from k3sreg.errors import ConfigError
from k3sreg.server.webui import render
from k3sreg.server.webui.gate import OpenGate, csrf_ok
from k3sreg.server.webui.plot import savings_svg


def test_web_path_is_normalised_and_kept_off_the_api() -> None:
    """`web.path` gets one spelling, and may not sit on the registry's own paths."""
    settings = parse_settings({"version": "0.1", "storage": {"inmemory": {}}, "web": {"path": "ui/"}}, {})
    assert settings.web.path == "/ui"
    for taken in ("/v2", "/v2/ui", "/metrics"):
        with pytest.raises(ConfigError, match=r"web\.path"):
            parse_settings({"version": "0.1", "storage": {"inmemory": {}}, "web": {"path": taken}}, {})


def test_plot_draws_a_point_per_sample_and_escapes_names() -> None:
    """Each sample of each upstream is a circle of its line; upstream names are text."""
    points = [(1000.0, {"a<b": 0.0, "quay.io": 10.0}), (1060.0, {"a<b": 2048.0, "quay.io": 20.0}),
              (1120.0, {"a<b": 4096.0})]
    svg = savings_svg(points, ["a<b", "quay.io"])
    assert svg.startswith("<svg") and svg.count("<circle") == 5
    assert "a&lt;b" in svg and "a<b" not in svg
    assert "no upstream" in savings_svg([], []).lower()


def test_form_token_must_match_the_cookie_and_the_site() -> None:
    """A delete form passes only with the cookie's token, and never from another site."""
    token = "t" * 43

    def request(cookie: str, site: str | None = None) -> bool:
        headers = {"Cookie": f"k3sreg_form={cookie}"} | ({"Sec-Fetch-Site": site} if site else {})
        return csrf_ok(make_mocked_request("POST", "/_delete", headers=headers), token)

    assert request(token) and request(token, "same-origin")
    assert not request("u" * 43) and not request(token, "cross-site")
    assert not csrf_ok(make_mocked_request("POST", "/_delete"), "")


def test_pull_command_and_tag_table_escape_everything() -> None:
    """Repository names, tags and hosts reach the HTML only escaped."""
    frame = render.Frame("", 'evil"host')
    html = render.pull_command(frame, "a/b", "<t>")
    assert "&lt;t&gt;" in html and "evil&quot;host" in html and "<t>" not in html


async def test_open_gate_shows_everything() -> None:
    """Without auth, every repository is visible and every action may be offered."""
    visible = await OpenGate().check(make_mocked_request("GET", "/"), ())
    assert visible("any/name")
    assert await OpenGate().may(make_mocked_request("GET", "/"), ())
