"""log.formatter: JSON and logstash lines are single valid JSON objects whatever the message holds."""

from __future__ import annotations

import json
import logging

from k3sreg.server.logformat import JsonFormatter, make_formatter


def record(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError('bad "value"\nsecond line')
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    rec = logging.LogRecord("k3sreg.test", logging.WARNING, __file__, 1, msg, args, exc_info)
    rec.__dict__.update(extra)
    return rec


def test_quotes_newlines_and_exceptions_stay_one_json_line() -> None:
    """A message with quotes and a newline, and a traceback, give one line that parses back to the same text."""
    line = JsonFormatter({"env": "prod"}).format(record('say "%s"\nnext', "hi", exc=True, upstream="docker.io"))
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["msg"] == 'say "hi"\nnext' and doc["level"] == "warning" and doc["logger"] == "k3sreg.test"
    assert doc["env"] == "prod" and doc["upstream"] == "docker.io"
    assert doc["error"].startswith("Traceback") and 'ValueError: bad "value"' in doc["error"]
    assert doc["time"].endswith("Z")


def test_logstash_keys() -> None:
    """logstash uses @timestamp, @version and message."""
    doc = json.loads(make_formatter("logstash", {}).format(record("x")))
    assert {"@timestamp", "@version", "message", "level"} <= set(doc) and doc["message"] == "x"


def test_text_fields_with_a_percent_sign() -> None:
    """Text lines carry log.fields as key=value, and a % in a value does not break the format."""
    line = make_formatter("text", {"share": "50%"}).format(record("hello"))
    assert line.endswith("WARNING k3sreg.test: hello share=50%")
