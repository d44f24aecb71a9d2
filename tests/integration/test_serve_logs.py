"""The log on stdout (where collectors in a pod expect it): `log.formatter: json` makes every line of a real
session one JSON object, start-up lines included, and stderr stays empty."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
from pathlib import Path

from tests.integration.test_serve import K3SREG, free_port, wait_up
from tests.peers.images import build_layout


def test_every_line_of_a_json_session_parses(tmp_path: Path) -> None:
    """A skopeo push, a tag list, odd requests and a stop: each stdout line is one JSON object, stderr empty."""
    port = free_port()
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/d\nhttp:\n"
                   f"  addr: 127.0.0.1:{port}\nlog:\n  level: info\n  formatter: json\n"
                   "  fields:\n    service: 'a \"quoted\" \\ value'\n    share: 50%\n")
    layout = build_layout(tmp_path / "layout")
    log, errors = tmp_path / "stdout.log", tmp_path / "stderr.log"
    # To files, not pipes: a server that logs more than a pipe holds must not block on it.
    with log.open("w") as sink, errors.open("w") as error_sink:
        proc = subprocess.Popen([K3SREG, "serve", str(cfg)], stdout=sink, stderr=error_sink, text=True)
    try:
        wait_up(f"http://127.0.0.1:{port}", proc=proc)
        for args in (["copy", "--dest-tls-verify=false", layout.oci_ref("1"), f"docker://127.0.0.1:{port}/demo:1"],
                     ["list-tags", "--tls-verify=false", f"docker://127.0.0.1:{port}/demo"]):
            done = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", '/v2/a"b/tags/list?x="y"')
        assert conn.getresponse().read() and conn.sock is not None
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert errors.read_text() == ""
    lines = log.read_text().splitlines()
    docs = [json.loads(line) for line in lines]
    assert all(isinstance(d, dict) for d in docs)
    assert all(d["service"] == 'a "quoted" \\ value' and d["share"] == "50%" for d in docs)
    assert any(d["msg"].startswith(f"k3sreg listening on http://127.0.0.1:{port}") for d in docs)
    assert docs[-1]["msg"] == "stopping on SIGTERM"
    access = [d for d in docs if d["logger"] == "aiohttp.access"]
    puts = [d for d in access if d["method"] == "PUT" and d["path"] == "/v2/demo/manifests/1"]
    assert len(puts) == 1 and puts[0]["status"] == 201 and puts[0]["remote"] == "127.0.0.1"
    assert isinstance(puts[0]["duration"], float) and isinstance(puts[0]["bytes"], int)
    assert "skopeo" in puts[0]["user_agent"]
    quoted = [d for d in access if d["path"].startswith('/v2/a"b/')]
    assert len(quoted) == 1 and quoted[0]["path"] == '/v2/a"b/tags/list?x="y"' and quoted[0]["status"] >= 400
    assert all({"time", "level", "msg"} <= set(d) for d in docs)
