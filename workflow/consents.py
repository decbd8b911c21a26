"""WeChat subscription-notification consents (订阅通知): recorded from the events WeChat
sends when a person answers the pop-up (``subscribe_msg_popup_event``) or changes their
choice in the settings later (``subscribe_msg_change_event``), and used by the WeChat
sender (bot/wechat/outbound.py) for a push outside the customer-service window.

Each ``accept`` in a pop-up is one consent: a one-time consent allows one message (WeChat
counts them), so two pop-ups accepted are two messages. A re-delivered event (WeChat
retries within 15 s) has the same sender, time and template: its key makes it one consent.
A ``reject`` (in a pop-up or a later change) revokes the person's open consents for that
template. Long-term consents (public-service accounts only) are recorded as such when the
account is configured for them (``wechat.subscribe_long_term``) and are used until revoked.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import ChannelIdentity, Person
from storage.participation import SubscriptionConsent
from storage.sql import insert_for

CHANNEL = "wechat"
#: The events, and the element holding their list of (template, choice).
EVENTS = {
    "subscribe_msg_popup_event": "SubscribeMsgPopupEvent",
    "subscribe_msg_change_event": "SubscribeMsgChangeEvent",
}
_consents = SubscriptionConsent.__table__


def choices(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(template id, "accept" | "reject" | …) of a consent event (xmltodict's shape: one
    ``List`` is a dict, several a list)."""
    holder = data.get(EVENTS.get(str(data.get("Event", "")), ""), None)
    items = holder.get("List") if isinstance(holder, Mapping) else None
    if isinstance(items, Mapping):
        items = [items]
    if not isinstance(items, list):
        return []
    return [
        (str(item.get("TemplateId", "")), str(item.get("SubscribeStatusString", "")))
        for item in items
        if isinstance(item, Mapping) and item.get("TemplateId")
    ]


async def record_consents(
    session: AsyncSession,
    openid: str,
    data: Mapping[str, Any],
    now: datetime,
    *,
    long_term: bool = False,
) -> int:
    """Record one consent event of ``openid`` in the caller's transaction; how many consents
    it added (0 for a re-delivery)."""
    event = str(data.get("Event", ""))
    person_id = await _person(session, openid, now)
    added = 0
    for template_id, status in choices(data):
        if status == "accept" and event == "subscribe_msg_popup_event":
            key = f"wx:{openid}:{data.get('CreateTime', '')}:{template_id}"[:200]
            statement = (
                insert_for(session, _consents)
                .values(
                    person_id=person_id,
                    openid=openid,
                    template_id=template_id[:128],
                    topic_id=None,
                    long_term=long_term,
                    key=key,
                    accepted_at=now,
                    used_at=None,
                    revoked_at=None,
                )
                .on_conflict_do_nothing(index_elements=["key"])
                .returning(_consents.c.id)
            )
            if (await session.exec(statement)).scalar_one_or_none() is not None:
                added += 1
        elif status == "reject":
            await session.exec(
                update(_consents)
                .where(
                    _consents.c.openid == openid,
                    _consents.c.template_id == template_id,
                    _consents.c.revoked_at.is_(None),
                    _consents.c.used_at.is_(None),
                )
                .values(revoked_at=now)
            )
    return added


async def _person(session: AsyncSession, openid: str, now: datetime) -> int:
    """The person of ``openid``; a follower who never wrote (the pop-up is on a page) is
    made one, as a first message would."""
    found = (
        await session.exec(
            select(ChannelIdentity.person_id).where(
                ChannelIdentity.channel == CHANNEL, ChannelIdentity.external_id == openid
            )
        )
    ).first()
    if found is not None:
        return found
    person = Person(display_name="", created_at=now)
    session.add(person)
    await session.flush()
    assert person.id is not None
    session.add(
        ChannelIdentity(person_id=person.id, channel=CHANNEL, external_id=openid, created_at=now)
    )
    await session.flush()
    return person.id


def usable(openid: str, template_id: str, *, long_term: bool) -> Any:
    """The condition of a consent that may carry a message now (for the sender)."""
    open_: Any = col(SubscriptionConsent.used_at).is_(None)
    if long_term:
        open_ = open_ | col(SubscriptionConsent.long_term).is_(True)
    return (
        (col(SubscriptionConsent.openid) == openid)
        & (col(SubscriptionConsent.template_id) == template_id)
        & col(SubscriptionConsent.revoked_at).is_(None)
        & open_
    )


async def has_open_consent(
    session: AsyncSession, openid: str, template_id: str, topic_id: int
) -> bool:
    """Whether ``openid`` has an unused consent for ``template_id`` that a push about
    ``topic_id`` may use (one asked for that topic, or for none in particular): then the
    bot does not ask again."""
    found = await session.exec(
        select(SubscriptionConsent.id)
        .where(
            usable(openid, template_id, long_term=False),
            col(SubscriptionConsent.topic_id).is_(None)
            | (col(SubscriptionConsent.topic_id) == topic_id),
        )
        .limit(1)
    )
    return found.first() is not None
