"""Show how a node's registries.yaml differs from the desired one without showing its credentials.

Values of the keys that hold secrets in registries.yaml (`password`, `auth`, `identity_token`, and any
`token`) are replaced by `***` line by line before diffing, so a changed password still shows as a changed
line, but never its value.
"""

from __future__ import annotations

import difflib
import re

SECRET_KEYS = ("password", "auth", "identity_token", "token")
# `auth:` alone opens a mapping and holds nothing secret; only a scalar or a flow mapping after it is masked.
_SECRET_LINE = re.compile(
    r"^(?P<head>\s*(?:-\s+)?[\"']?(?:" + "|".join(SECRET_KEYS) + r")[\"']?\s*:\s+)(?P<value>\S.*)$"
)
_FLOW_SECRET = re.compile(r"(?P<head>[{,]\s*[\"']?(?:" + "|".join(SECRET_KEYS) + r")[\"']?\s*:\s*)(?P<value>[^,}]+)")


def mask_secrets(text: str) -> str:
    """`text` with every secret value replaced by `***` (comments and layout kept)."""
    out = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        end = line[len(body):]
        m = _SECRET_LINE.match(body)
        if m and not m.group("value").startswith(("{", "#")):
            body = m.group("head") + "***"
        body = _FLOW_SECRET.sub(lambda fm: fm.group("head") + "***", body)
        out.append(body + end)
    return "".join(out)


def masked_diff(current: bytes | None, desired: bytes, node: str) -> str:
    """A unified diff from the node's file (None: missing) to the desired file, secrets masked."""
    old = mask_secrets(current.decode("utf-8", "replace")) if current is not None else ""
    new = mask_secrets(desired.decode("utf-8", "replace"))
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"{node}:registries.yaml" if current is not None else "/dev/null",
        tofile="desired",
    )
    text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
    if current is not None and not text and current != desired:
        # Only secrets (or bytes that do not decode) differ: say so rather than show an empty diff.
        return "(the files differ only in masked values or in bytes that are not text)\n"
    return text
