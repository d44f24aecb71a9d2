"""`log.formatter: json`: every line k3sreg writes during a real session parses as one JSON object."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
from pathlib import Path

from tests.integration.test_serve import K3SREG, free_port, wait_up
from tests.peers.images import build_layout


def test_every_line_of_a_json_session_parses(tmp_path: Path) -> None:
    """A skopeo push, a tag list and odd requests (quotes in the path): each stderr line is one JSON object."""
    port = free_port()
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/d\nhttp:\n"
                   f"  addr: 127.0.0.1:{port}\nlog:\n  level: info\n  formatter: json\n"
                   "  fields:\n    service: 'a \"quoted\" \\ value'\n    share: 50%\n")
    layout = build_layout(tmp_path / "layout")
    log = tmp_path / "stderr.log"
    # stderr to a file, not a pipe: a server that logs more than a pipe holds must not block on it.
    with log.open("w") as sink:
        proc = subprocess.Popen([K3SREG, "serve", str(cfg)], stdout=subprocess.DEVNULL, stderr=sink, text=True)
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
    lines = log.read_text().splitlines()
    docs = [json.loads(line) for line in lines]
    assert all(isinstance(d, dict) for d in docs)
    assert all(d["service"] == 'a "quoted" \\ value' and d["share"] == "50%" for d in docs)
    assert any(d["msg"].startswith(f"k3sreg listening on http://127.0.0.1:{port}") for d in docs)
    access = [d for d in docs if d["logger"] == "aiohttp.access"]
    puts = [d for d in access if d["method"] == "PUT" and d["path"] == "/v2/demo/manifests/1"]
    assert len(puts) == 1 and puts[0]["status"] == 201 and puts[0]["remote"] == "127.0.0.1"
    assert isinstance(puts[0]["duration"], float) and isinstance(puts[0]["bytes"], int)
    assert "skopeo" in puts[0]["user_agent"]
    quoted = [d for d in access if d["path"].startswith('/v2/a"b/')]
    assert len(quoted) == 1 and quoted[0]["path"] == '/v2/a"b/tags/list?x="y"' and quoted[0]["status"] >= 400
    assert all({"time", "level", "msg"} <= set(d) for d in docs)
