"""Logging for ``serve``, ``worker`` and the CLI: plain lines or JSON (``server.log_format``),
the request id of the webhook or page being answered on every line, and no WeChat openid
or phone number in clear.

Masking is a filter on the one handler, so it covers every logger, third-party ones
included, and the text of tracebacks: a log line is shipped to places (a log service,
a support ticket) where residents' identifiers must not go. Identifiers we log on
purpose (a Telegram chat, an openid) go through ``pseudonym``: the same person gives
the same short hash, so lines can still be followed, without the identifier itself.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import re
import sys
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

from bot.config import LogFormat

#: The request being answered ("" outside a request: the outbox, the sweeps).
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

#: A mainland mobile number, alone or inside text (not part of a longer run of digits).
_PHONE = re.compile(r"(?<![0-9０-９])(1[3-9][0-9])[0-9]{4}([0-9]{4})(?![0-9０-９])")
#: A WeChat openid: 28 characters of [A-Za-z0-9_-], by the account's convention starting
#: with "o" (also inside longer keys such as "wechat:event:<openid>:<time>").
_OPENID = re.compile(r"(?<![A-Za-z0-9_-])o[A-Za-z0-9_-]{27}(?![A-Za-z0-9_-])")

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request)s: %(message)s"


def pseudonym(identifier: object) -> str:
    """A short stable stand-in for a person's identifier in a log line."""
    return "p:" + hashlib.sha256(str(identifier).encode()).hexdigest()[:10]


def mask(text: str) -> str:
    """``text`` with phone numbers shortened to 139****5678 and openids pseudonymised."""
    text = _PHONE.sub(r"\1****\2", text)
    return _OPENID.sub(lambda m: pseudonym(m.group()), text)


class _Context(logging.Filter):
    """Adds the request id and masks the message (arguments merged in first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()  # a field of the JSON lines
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class _Masked(logging.Formatter):
    """Tracebacks and stacks masked like messages (they quote values, ids included)."""

    def formatException(self, ei: object) -> str:
        return mask(str(super().formatException(ei)))  # type: ignore[arg-type]

    def formatStack(self, stack_info: str) -> str:
        return mask(str(super().formatStack(stack_info)))


class _MaskedText(_Masked):
    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", "")
        record.request = f" [{request_id}]" if request_id else ""
        return super().format(record)


class _MaskedJson(_Masked, JsonFormatter):
    pass


def configure(
    log_format: LogFormat = "text", level: int = logging.INFO, stream: TextIO | None = None
) -> None:
    """Send every logger's records through one masked handler on ``stream`` (stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_Context())
    if log_format == "json":
        handler.setFormatter(
            _MaskedJson(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(_MaskedText(_TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
