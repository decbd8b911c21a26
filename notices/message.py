"""``OutboundMessage``: the one shape of everything the outbox sends. Every producer (the
lifecycle's notices, the reminders, ``tell``, the dialogs' late replies, the channels'
own replies) builds one; the dispatcher decodes a row's body into one, once, and hands it
to the channel's sender. Its docstring is the documentation of ``outbox_messages.body``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from workflow.payloads import Button

#: The version ``to_json`` writes, as ``"v"``. A body without one is version 0: the plain
#: dict every row had before the model (same keys, each optional). Version 2 added
#: ``file``: a row of it must not reach code that would send its caption without the file.
VERSION = 2
#: What a message's file is: a document (Telegram ``sendDocument``: a PDF) or an image
#: (Telegram ``sendPhoto``, a WeChat customer-service image: a PNG).
FILE_KINDS = frozenset({"document", "image"})


class UnreadableBody(ValueError):
    """A stored body this code cannot read: a version it does not know, or a malformed one.
    Trying again cannot help: its row goes dead with this as the reason."""


class Shown(Protocol):
    """What a dialog's reply has (``dialogs.types.Reply``, which notices/ may not import)."""

    @property
    def text(self) -> str: ...

    @property
    def buttons(self) -> Sequence[Button]: ...


@dataclass(frozen=True, slots=True)
class FileRef:
    """A file a message carries: kept in the media store under ``key`` (made once, read by
    every send and retry), shown to the person as ``filename``, sent as ``kind``
    (``FILE_KINDS``)."""

    key: str
    filename: str
    kind: str

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "filename": self.filename, "kind": self.kind}


class Files(Protocol):
    """Where a sender gets a message's file (bot/notice_files.py: the printable notices,
    made again when the store lost them). Raises a ``notices.outbox.DeliveryError``
    when it cannot give it."""

    async def read(self, ref: FileRef) -> bytes: ...


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message to one chat (who and where is on the outbox row, not here).

    - ``text``: what the person reads. A sender cuts a text too long for its platform into
      several messages, the buttons with the last.
    - ``buttons``: the choices offered, in order (Telegram: an inline keyboard; WeChat: a
      msgmenu inside the customer-service window; console: numbered lines).
    - ``url``: the topic's public page, "" when it has none. Telegram adds it as a
      "详情" line unless the text has it; a WeChat template message links to it.
    - ``review_url``: a reviewer's signed review-page link; a WeChat template message
      links to it rather than to ``url``.
    - ``topic_number``: the topic's number ("" for none), a WeChat template's 编号 field.
    - ``unfollow_url``: a push's signed unfollow link (workflow/unfollow_links.py), for
      the messages that cannot carry its unfollow button: a WeChat template message or
      subscription notification links to it ("" for none).
    - ``edit_message_id``: this replaces the text of that message sent before, and drops
      its buttons (Telegram: a review card that has been handled), instead of a new one.
    - ``file``: the message is that file, ``text`` its caption (a printable notice in the
      convener's chat); one file a message, so a failed upload is retried on its own.

    JSON (``to_json``): ``{"v": 1, "text": str, "buttons": [[label, payload], …],
    "url": str, "review_url": str, "topic_number": str, "edit_message_id": str | null,
    "unfollow_url": str, "file": {"key": str, "filename": str, "kind": str} | null}``
    (version 2), every key written. Version 1 is the same without ``file`` (its
    ``unfollow_url`` came later within it: a row without it has none, as in version 0).
    Version 0, the body before it had a version, has version 1's keys, each optional;
    ``from_json`` reads all three.
    """

    text: str = ""
    buttons: tuple[Button, ...] = ()
    url: str = ""
    review_url: str = ""
    topic_number: str = ""
    edit_message_id: str | None = None
    unfollow_url: str = ""
    file: FileRef | None = None

    @classmethod
    def of(cls, reply: Shown) -> OutboundMessage:
        """A dialog's reply as a message."""
        return cls(text=reply.text, buttons=tuple(reply.buttons))

    def to_json(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "text": self.text,
            "buttons": [[b.label, b.payload] for b in self.buttons],
            "url": self.url,
            "review_url": self.review_url,
            "topic_number": self.topic_number,
            "edit_message_id": self.edit_message_id,
            "unfollow_url": self.unfollow_url,
            "file": self.file.to_json() if self.file is not None else None,
        }

    @classmethod
    def from_json(cls, body: object) -> OutboundMessage:
        """The message a stored body holds, of any version this code reads; raises
        ``UnreadableBody`` for any other, or for one that is not of its version's shape."""
        if not isinstance(body, Mapping):
            raise UnreadableBody(f"body is a {type(body).__name__}, not an object")
        version = body.get("v", 0)
        if type(version) is not int or version not in _READABLE:  # not True, not 1.0
            raise UnreadableBody(
                f"body version {version!r} is not one this code reads ({sorted(_READABLE)})"
            )
        # Version 1 has version 0's keys, all written, and version 2 adds ``file`` (absent
        # before it, so None): one reader does for all three. A later version that changes
        # the keys gets its own reader here.
        return cls(
            text=_text(body, "text"),
            buttons=as_buttons(_pairs(body.get("buttons"))),
            url=_text(body, "url"),
            review_url=_text(body, "review_url"),
            topic_number=_text(body, "topic_number"),
            edit_message_id=_edit_target(body.get("edit_message_id")),
            unfollow_url=_text(body, "unfollow_url"),
            file=_file(body.get("file")) if version >= 2 else None,
        )


_READABLE = frozenset({0, 1, VERSION})


def as_buttons(pairs: Iterable[tuple[str, str]]) -> tuple[Button, ...]:
    """(label, payload) pairs, as the cards and reminders make them, as buttons."""
    return tuple(Button(label, payload) for label, payload in pairs)


def _text(body: Mapping[str, Any], key: str) -> str:
    # Version 0 was read leniently (``str(body.get(key, ""))``): a topic number may be
    # stored as a number. None stands for nothing, as a missing key does.
    value = body.get(key)
    if value is None:
        return ""
    if isinstance(value, str | int):
        return str(value)
    raise UnreadableBody(f"{key} is a {type(value).__name__}")


def _pairs(value: object) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise UnreadableBody(f"buttons is a {type(value).__name__}, not a list")
    pairs = []
    for item in value:
        if not (
            isinstance(item, list | tuple)
            and len(item) == 2
            and all(isinstance(part, str) for part in item)
        ):
            raise UnreadableBody(f"a button is not [label, payload]: {item!r}"[:200])
        pairs.append((item[0], item[1]))
    return pairs


def _edit_target(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    raise UnreadableBody(f"edit_message_id is a {type(value).__name__}")


def _file(value: object) -> FileRef | None:
    if value is None:
        return None
    if not (
        isinstance(value, Mapping)
        and all(isinstance(value.get(key), str) and value[key] for key in ("key", "filename"))
        and value.get("kind") in FILE_KINDS
    ):
        raise UnreadableBody(f"file is not {{key, filename, kind}}: {value!r}"[:200])
    return FileRef(key=value["key"], filename=value["filename"], kind=value["kind"])
