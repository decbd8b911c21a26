"""A small public notice board for the page tests (HTTP and browser): topics walked through
the real lifecycle in the rooms of tests/world.py, with photos, suggestions in every
moderation status, likes, follows and a poll.

Photos are published as the convener chooses them: through the publish step's ``photos``
field (recorded as ``facts["publish"]["photos"]``, a list of attachment ids).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from PIL import Image, ImageDraw

from bot.media_store import MediaStore
from storage.db import SessionFactory, transaction
from storage.models import Attachment, Person, Topic
from storage.participation import Follow, Like, Poll, PollOption, PollVote, Suggestion
from tests.world import ROUTES, World, build_world
from workflow.clock import FixedClock
from workflow.lifecycle import State

PHONE = "13812345678"
SUBMITTER = "张三丰"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
#: Within the 40 characters of a title.
HOSTILE_TITLE = "<b>标题</b><script>alert(1)</script>"


def _photo() -> bytes:
    """A 480×270 picture (a street at dusk, roughly), as a phone would send."""
    image = Image.new("RGB", (480, 270), (40, 60, 110))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 180, 480, 270), fill=(90, 90, 90))
    draw.rectangle((220, 40, 232, 180), fill=(30, 30, 30))
    draw.ellipse((200, 25, 252, 60), fill=(200, 200, 140))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


PNG = _photo()


@dataclass
class Board:
    world: World
    #: name → topic (reloaded after seeding)
    topics: dict[str, Topic] = field(default_factory=dict)
    photos: dict[str, int] = field(default_factory=dict)
    suggestions: dict[str, str] = field(default_factory=dict)


async def publicized(world: World, room: str, title: str, **kw: Any) -> Topic:
    return await world.walk(await world.open(room, title=title, **kw), ROUTES[State.PUBLICIZED])


async def photo(world: World, topic: Topic, name: str, media: MediaStore) -> int:
    """A stored photo of ``topic`` (as the media downloader leaves it)."""
    async with transaction(world.sessions) as session:
        attachment = Attachment(
            topic_id=topic.id,
            kind="image",
            status="stored",
            storage_key=f"test/{name}.png",
            content_type="image/png",
            created_at=world.clock.now(),
        )
        session.add(attachment)
        await session.flush()
        assert attachment.id is not None
    await media.put(attachment.storage_key, PNG)
    return attachment.id


async def published_with_photos(
    world: World,
    room: str,
    title: str,
    media: MediaStore,
    names: dict[str, bool],
    photos: dict[str, int],
    **kw: Any,
) -> Topic:
    """A topic walked to approval, given photos, and published with the ones ``names``
    marks True (the convener's choice)."""
    topic = await world.walk(await world.open(room, title=title, **kw), ROUTES[State.APPROVED])
    for name in names:
        photos[name] = await photo(world, topic, name, media)
    chosen = [photos[name] for name, shown in names.items() if shown]
    await world.apply(topic, "publish", world.person(room, "convener"), photos=chosen)
    return await world.reload(topic)


async def seed(sessions: SessionFactory, clock: FixedClock, media: MediaStore) -> Board:
    world = await build_world(sessions, clock)
    board = Board(world)
    async with transaction(sessions) as session:
        person = await session.get(Person, world.person("-", "resident"))
        assert person is not None
        person.display_name, person.phone = SUBMITTER, PHONE

    lamp = await published_with_photos(
        world,
        "V1",
        "村口路灯不亮",
        media,
        {"approved": True, "unapproved": False},
        board.photos,
        contact_phone=PHONE,
        location={"latitude": 33.6, "longitude": 119.0, "label": "秘密小巷7号"},
    )
    clock.advance(timedelta(hours=1))
    hostile = await published_with_photos(
        world, "V2", HOSTILE_TITLE, media, {"elsewhere": True}, board.photos
    )
    clock.advance(timedelta(hours=1))
    results = await world.walk(await world.open("V3", title="小区雨天积水严重"),
                               ROUTES[State.RESULTS_PUBLISHED])  # fmt: skip
    await world.apply(results, "record_progress", world.person("V3", "convener"),
                      note="排水管已铺设一半")  # fmt: skip
    clock.advance(timedelta(hours=1))
    other_district = await publicized(world, "V4", "四村健身器材损坏")
    hidden_topic = await world.at(State.AWAITING_APPROVAL)  # not public
    board.topics = {
        "lamp": lamp,
        "hostile": hostile,
        "results": results,
        "other": other_district,
        "private": hidden_topic,
    }

    now = clock.now()
    resident = world.person("-", "resident")
    neighbour = world.person("-", "neighbour")
    async with transaction(sessions) as session:
        lamp_id = lamp.id
        assert lamp_id is not None
        for key, body, status in (
            ("visible", "建议在路口加装两盏太阳能灯", "visible"),
            ("hostile", "好主意" + HOSTILE, "visible"),
            ("held", "含有敏感词的建议", "held"),
            ("hidden", "被举报隐藏的建议", "hidden"),
        ):
            session.add(
                Suggestion(
                    key=f"seed:{key}",
                    topic_id=lamp_id,
                    person_id=resident,
                    body=body,
                    status=status,
                    created_at=now,
                )
            )
            board.suggestions[key] = body
        for who, active in (
            (resident, True),
            (neighbour, True),
            (world.person("V1", "member"), False),
        ):
            session.add(Like(person_id=who, topic_id=lamp_id, active=active,
                             created_at=now, updated_at=now))  # fmt: skip
        session.add(Follow(person_id=resident, topic_id=lamp_id, created_at=now))
        session.add(Follow(person_id=neighbour, topic_id=lamp_id, created_at=now, ended_at=now))
        poll = Poll(room_id=world.rooms["V1"], title="本季度先办哪件事", created_at=now,
                    closes_at=now + timedelta(days=3))  # fmt: skip
        session.add(poll)
        await session.flush()
        options = [PollOption(poll_id=poll.id, topic_id=t.id) for t in (lamp, hostile)]
        session.add_all(options)
        await session.flush()
        session.add(PollVote(poll_id=poll.id, person_id=resident, option_id=options[0].id, at=now))
        session.add(PollVote(poll_id=poll.id, person_id=neighbour, option_id=options[0].id, at=now))
    board.photos["private"] = await photo(world, hidden_topic, "private", media)
    board.topics = {name: await world.reload(t) for name, t in board.topics.items()}
    return board
