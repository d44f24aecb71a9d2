"""Log formatters for `log.formatter`: text, json (logrus's keys) and logstash, with `log.fields` on every line.

JSON lines are built with `json.dumps`, one object per record, so quotes, backslashes and newlines in a message
(every access line has quotes) stay valid JSON. Keys:

    json      {"time": "2026-01-02T03:04:05.678Z", "level": "info", "msg": "...", "logger": "k3sreg.server", ...}
    logstash  {"@timestamp": ..., "@version": "1", "level": ..., "message": ..., "logger": ..., ...}

then `log.fields`, then whatever a record carries in `extra=` (an exception as "error"). Access lines also
carry remote, method, path, protocol, status, bytes, duration (seconds), referer and user_agent, read from the
values aiohttp's access logger passes along (`ACCESS_LOG_FORMAT` asks it for the duration).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
from collections.abc import Mapping
from typing import Any

ACCESS_LOG_FORMAT = '%a %t "%r" %s %b "%{Referer}i" "%{User-Agent}i" %Tf'
"""aiohttp's default access line plus the time taken (seconds), so JSON access lines can carry `duration`."""

_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warning", "ERROR": "error", "CRITICAL": "fatal"}
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}
# aiohttp's access-log values (AccessLogger.LOG_FORMAT_MAP) under the names the JSON lines use.
_ACCESS = {"remote_address": "remote", "response_status": "status", "response_size": "bytes"}
_ACCESS_DROPPED = {"request_start_time", "request_time", "request_time_frac", "request_time_micro",
                   "first_request_line", "request_header", "response_header", "process_id"}


class JsonFormatter(logging.Formatter):
    """One `json.dumps` object per record; `logstash` selects logstash's key names."""

    def __init__(self, fields: Mapping[str, Any] | None = None, logstash: bool = False) -> None:
        super().__init__()
        self.fields = dict(fields or {})
        self.keys = ("@timestamp", "message") if logstash else ("time", "msg")
        self.logstash = logstash

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        doc: dict[str, Any] = {self.keys[0]: when.isoformat(timespec="milliseconds").replace("+00:00", "Z")}
        if self.logstash:
            doc["@version"] = "1"
        doc["level"] = _LEVELS.get(record.levelname, record.levelname.lower())
        doc[self.keys[1]] = record.getMessage()
        doc["logger"] = record.name
        for key, value in self.fields.items():
            doc.setdefault(str(key), value)
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if record.name == "aiohttp.access":
            extra = _access_fields(extra)
        for key, value in extra.items():
            doc.setdefault(key, value)
        if record.exc_info:
            doc.setdefault("error", self.formatException(record.exc_info))
        elif record.exc_text:
            doc.setdefault("error", record.exc_text)
        return json.dumps(doc, default=str)


def _access_fields(extra: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    line = extra.get("first_request_line")
    if isinstance(line, str) and line.count(" ") >= 2:
        method, rest = line.split(" ", 1)
        path, _, protocol = rest.rpartition(" ")
        out.update(method=method, path=path, protocol=protocol)
    for source, target in _ACCESS.items():
        if source in extra:
            out[target] = extra[source]
    seconds = extra.get("request_time_frac")
    if seconds is not None:
        with contextlib.suppress(TypeError, ValueError):
            out["duration"] = float(seconds)
    headers = extra.get("request_header")
    if isinstance(headers, dict):
        for header, key in (("Referer", "referer"), ("User-Agent", "user_agent")):
            if headers.get(header) not in (None, "-"):
                out[key] = headers[header]
    out.update({k: v for k, v in extra.items() if k not in _ACCESS and k not in _ACCESS_DROPPED})
    return out


def make_formatter(formatter: str, fields: Mapping[str, Any]) -> logging.Formatter:
    """The formatter for `log.formatter` (text, json or logstash) with `log.fields` added to every line."""
    if formatter in ("json", "logstash"):
        return JsonFormatter(fields, logstash=formatter == "logstash")
    # Field values are pasted into a %-style template: a literal % must be doubled.
    tail = "".join(f" {k}={v}" for k, v in fields.items()).replace("%", "%%")
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s" + tail)
