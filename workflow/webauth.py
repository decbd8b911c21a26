"""Who is acting on a public page inside WeChat: the web authorization's one-time state, the
person behind an openid, and the signed session cookie that carries them afterwards.

The round trip (bot/web/web_auth.py): a page action sends the person to WeChat's authorize
page with a fresh ``state`` (``new_state``: only its hash is stored, used once, expires in
``STATE_MINUTES``); WeChat sends them back with a code and the state; the state is taken
(``take_state``: the first use wins, a replay finds it used); the code gives their openid;
the person for that openid (``person_for_openid``) is named in a cookie signed with the
server's secret (``Sessions``). Nothing the browser sends is trusted but that signature:
never an openid or person id in a form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import ChannelIdentity, Person
from storage.sql import insert_for
from storage.webauth import WebAuthState
from workflow.signatures import same_secret

STATE_MINUTES = 10
SESSION_HOURS = 24
#: Where a round trip may return to: our topic pages only (no open redirect).
NEXT_PATH = re.compile(r"/t/[A-Za-z0-9_-]{1,60}")
CHANNEL = "wechat"
OPENID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


async def new_state(session: AsyncSession, next_path: str, now: datetime) -> str:
    """A fresh state for one authorize round trip back to ``next_path``."""
    if not NEXT_PATH.fullmatch(next_path):
        raise ValueError(f"not a page to return to: {next_path!r}")
    state = secrets.token_urlsafe(24)  # WeChat allows 128 bytes of [a-zA-Z0-9_-]
    session.add(
        WebAuthState(
            state_hash=_hash(state),
            next_path=next_path,
            created_at=now,
            expires_at=now + timedelta(minutes=STATE_MINUTES),
        )
    )
    return state


async def take_state(session: AsyncSession, state: str, now: datetime) -> str | None:
    """The page to return to if ``state`` is ours, unused and unexpired; it is used up in
    the same statement (of two uses at once, exactly one gets it). None otherwise."""
    if not state or len(state) > 128:
        return None
    digest = _hash(state)
    taken = await session.exec(
        update(WebAuthState)
        .where(
            col(WebAuthState.state_hash) == digest,
            col(WebAuthState.used_at).is_(None),
            col(WebAuthState.expires_at) > now,
        )
        .values(used_at=now)
        .returning(col(WebAuthState.next_path))
    )
    return taken.scalar_one_or_none()


async def person_for_openid(session: AsyncSession, openid: str, now: datetime) -> int:
    """The person behind a WeChat openid of our account: the one who writes to the account
    from it, or a new person (their first contact is this page)."""
    if not OPENID.fullmatch(openid):
        raise ValueError("not an openid")
    found = await session.exec(
        select(ChannelIdentity.person_id).where(
            ChannelIdentity.channel == CHANNEL, ChannelIdentity.external_id == openid
        )
    )
    person_id = found.first()
    if person_id is not None:
        return person_id
    person = Person(display_name="", created_at=now)
    session.add(person)
    await session.flush()
    assert person.id is not None
    # Two first visits at once: the unique (channel, external_id) keeps one identity.
    await session.exec(
        insert_for(session, ChannelIdentity)
        .values(person_id=person.id, channel=CHANNEL, external_id=openid, created_at=now)
        .on_conflict_do_nothing(index_elements=["channel", "external_id"])
    )
    found = await session.exec(
        select(ChannelIdentity.person_id).where(
            ChannelIdentity.channel == CHANNEL, ChannelIdentity.external_id == openid
        )
    )
    return found.one()


@dataclass(frozen=True)
class Viewer:
    """The person a valid session cookie names."""

    person_id: int
    openid: str
    expires: int


class Sessions:
    """Session cookies ``<person>.<openid>.<expires>.<signature>`` (HMAC-SHA256 with the
    server's secret, under a purpose of its own so no other signed value can pass)."""

    def __init__(self, key: bytes) -> None:
        self.key = hashlib.sha256(b"mashangyi web session\0" + key).digest()

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self.key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def issue(self, person_id: int, openid: str, now: datetime) -> str:
        expires = int((now + timedelta(hours=SESSION_HOURS)).timestamp())
        payload = f"{person_id}.{openid}.{expires}"
        return f"{payload}.{self._sign(payload)}"

    def read(self, cookie: str, now: datetime) -> Viewer | None:
        parts = cookie.split(".") if cookie and len(cookie) < 400 else []
        if len(parts) != 4:
            return None
        person, openid, expires, signature = parts
        if not (person.isdigit() and expires.isdigit() and OPENID.fullmatch(openid)):
            return None
        if not same_secret(self._sign(f"{person}.{openid}.{expires}"), signature):
            return None
        if int(expires) <= now.timestamp():
            return None
        return Viewer(int(person), openid, int(expires))

    def form_token(self, viewer: Viewer, number: str) -> str:
        """What a page's action form carries: this session's, for this topic only (a form
        posted from elsewhere, or for another person, does not have it)."""
        return self._sign(f"form.{viewer.person_id}.{viewer.expires}.{number}")

    def check_form(self, viewer: Viewer, number: str, token: str) -> bool:
        return same_secret(self.form_token(viewer, number), token)
