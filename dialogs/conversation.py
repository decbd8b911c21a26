"""One message being handled: who sent it, where they are in a dialog, and what to say."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from dialogs.types import Button, Inbound, Reply
from storage.dialog_state import Speaker, State
from storage.models import Room
from workflow.audit import record
from workflow.engine import Lifecycle
from workflow.permissions import Actor, load_actor
from workflow.rooms import get_room
from workflow.texts import Catalogue

SAY = Catalogue(Path(__file__).with_name("zh_CN.toml"))
say = SAY.text

#: The flow a person is in when no dialog is under way.
HOME = "home"


def button(key: str, payload: str) -> Button:
    return Button(SAY.label("buttons", key), payload)


class Tell(Protocol):
    """Writes one message to a person into the outbox, in the caller's transaction, on the
    chat they used last (nothing when they have none yet): ``notices.notify.tell``, given
    to ``Dialogs`` by the composition root so that dialogs/ does not import notices/."""

    async def __call__(
        self,
        session: AsyncSession,
        person_id: int,
        *,
        key: str,
        kind: str,
        text: str,
        buttons: Sequence[tuple[str, str]] = (),
        topic_id: int | None = None,
        now: datetime,
    ) -> None: ...


class ReplyLater(Protocol):
    """Writes the replies to a message that was acknowledged before it was handled into
    the outbox, in the caller's transaction, to the chat it came from
    (``notices.notify.reply_later``, wired by the composition root)."""

    async def __call__(
        self,
        session: AsyncSession,
        *,
        channel: str,
        address: str,
        message_id: str,
        replies: Sequence[Reply],
        now: datetime,
    ) -> None: ...


class WriteReplies(Protocol):
    """Writes a handled message's replies into the outbox in the dialog's own transaction,
    for a channel whose replies always go that way (Telegram): the receipt and its replies
    commit together, so no crash between the two leaves replies to be written later, behind
    the person's next message."""

    async def __call__(
        self, session: AsyncSession, replies: Sequence[Reply], now: datetime
    ) -> None: ...


@dataclass
class Conversation:
    session: AsyncSession
    inbound: Inbound
    person: Speaker
    state: State
    lifecycle: Lifecycle
    now: datetime
    notify: Tell
    replies: list[Reply] = field(default_factory=list)
    #: The sensitive-word list (config [moderation]), for suggestions.
    words: Sequence[str] = ()
    #: Where the public pages are (config server.public_base_url); "" in tools without one.
    public_base_url: str = ""
    #: The largest upload taken, in bytes (config media.max_bytes); 0: no limit here.
    max_upload_bytes: int = 0
    #: Rooms looked up by code during this message (a step asks for its room several times).
    _rooms: dict[str, Room | None] = field(default_factory=dict, repr=False)

    @property
    def data(self) -> dict[str, Any]:
        return self.state.data

    def reply(self, text: str, *buttons: Button) -> None:
        self.replies.append(Reply(text, tuple(buttons)))

    async def tell(
        self,
        person_id: int,
        key: str,
        text: str,
        *,
        kind: str,
        buttons: Sequence[tuple[str, str]] = (),
        topic_id: int | None = None,
    ) -> None:
        """A message to someone other than the sender, through the outbox (``key`` makes a
        retried message write it once)."""
        await self.notify(
            self.session,
            person_id,
            key=key,
            kind=kind,
            text=text,
            buttons=buttons,
            topic_id=topic_id,
            now=self.now,
        )

    async def refuse(self, audit_action: str, text: str, *buttons: Button, **subject: Any) -> None:
        """Say no, change nothing, and leave an audit row saying what was refused."""
        await record(self.session, audit_action, at=self.now, actor_id=self.person.id, **subject)
        self.reply(text, *buttons)

    def goto(self, flow: str, step: str) -> None:
        self.state.flow, self.state.step = flow, step

    def home(self) -> None:
        """Leave any dialog; only the chosen room is remembered."""
        self.state.data = {"room": self.data["room"]} if "room" in self.data else {}
        self.goto(HOME, "idle")

    def choose_room(self) -> None:
        """Ask for a room first (home's search), where a step needs one and there is none."""
        self.goto(HOME, "search")
        self.reply(say("common", "choose_room_first"))

    async def room(self) -> Room | None:
        """The room this person is in (chosen by scan or search), if any."""
        code = self.data.get("room")
        return await self.find_room(code) if code else None

    async def find_room(self, code: str) -> Room | None:
        if code not in self._rooms:
            self._rooms[code] = await get_room(self.session, code)
        return self._rooms[code]

    async def actor(self) -> Actor:
        assert self.person.id is not None
        return await load_actor(self.session, self.person.id)
