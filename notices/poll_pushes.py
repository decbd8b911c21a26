"""A screening poll's pushes (notices/pushes.py does the chunked, restart-safe expansion):

- **opened**: the room's followers are told there is a vote, with its 参与投票 button (and,
  as every push to a room's followers, the unfollow-room button and link). ``PollPushWriter``
  is the lifecycle's poll listener: the job is written in the transaction that creates the
  poll (workflow/polls.py ``create_poll``).
- **closed**: the voters and the convener who started it hear the result. ``close_polls`` is
  a task of the reminder sweep (notices/reminders/finders.py ``TASKS``): in one transaction
  it closes the polls whose time is up (``polls.close_due``, a conditional update: each
  once, by one sweeper) and records one push job per poll, keyed by the poll. A sweep that
  fails before its commit closed nothing (the next one does it all); after the commit the
  job, not the sweep, tells each person once.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from notices.message import OutboundMessage
from notices.pushes import TEXTS, schedule_push
from notices.templating import text_environment
from storage.models import Room
from storage.participation import Poll
from workflow import polls
from workflow.clock import Clock
from workflow.payloads import POLL_VOTE, Button, Pair

_env = text_environment()


def _render(name: str, **context: object) -> str:
    return _env.get_template(f"pushes/{name}.txt").render(**context).strip()


class PollPushWriter:
    """A ``Lifecycle`` poll listener: a poll opened is pushed to its room's followers."""

    def __init__(self, clock: Clock, public_base_url: str) -> None:
        self.clock = clock
        self.public_base_url = public_base_url.rstrip("/")

    async def __call__(self, session: AsyncSession, poll: Poll) -> None:
        assert poll.id is not None
        room = await session.get(Room, poll.room_id)
        text = _render(
            "poll.opened",
            room=room.name if room else "",
            title=poll.title,
            closes=polls.when(poll.closes_at),
            options=[o.title for o in await polls.options(session, poll.id)],
        )
        url = f"{self.public_base_url}/r/{room.code}" if room and self.public_base_url else ""
        await schedule_push(
            session,
            event_key=f"poll-opened-{poll.id}",
            kind="push.poll.opened",
            audience="room",
            subject_id=poll.room_id,
            # The convener who opened it knows.
            exclude=(poll.created_by_id,),
            message=OutboundMessage(
                text=text,
                url=url,
                buttons=(Button(TEXTS.label("buttons", "poll_vote"), _show(poll)),),
            ),
            now=self.clock.now(),
        )


async def close_polls(session: AsyncSession, now: datetime) -> int:
    """The sweep's task: close the polls whose time is up and record each one's push of
    its result, in the caller's transaction; how many it closed."""
    closed = await polls.close_due(session, now)
    for poll_id in closed:
        poll = await session.get(Poll, poll_id)
        assert poll is not None
        tallies = await polls.results(session, poll, now)
        room = await session.get(Room, poll.room_id)
        text = _render(
            "poll.closed",
            room=room.name if room else "",
            title=poll.title,
            total=sum(t.votes for t in tallies),
            results=[{"title": t.option.title, "votes": t.votes} for t in tallies],
        )
        await push_poll_closed(session, poll, text, now)
    return len(closed)


async def push_poll_closed(session: AsyncSession, poll: Poll, text: str, now: datetime) -> bool:
    """Tell every voter of ``poll`` and the convener who started it ``text`` (its result),
    once, in the caller's transaction (the one that closes the poll), with a button that
    shows the result. No unfollow button: a voter follows nothing by voting, and this is
    the poll's last push."""
    assert poll.id is not None
    return await schedule_push(
        session,
        event_key=f"poll-{poll.id}",
        kind="push.poll.closed",
        audience="poll",
        subject_id=poll.id,
        message=OutboundMessage(
            text=text, buttons=(Button(TEXTS.label("buttons", "poll_result"), _show(poll)),)
        ),
        now=now,
    )


def _show(poll: Poll) -> str:
    """The button payload that shows the poll: its ballot while open, its result after."""
    assert poll.id is not None
    return POLL_VOTE.build(Pair(poll.id, 0))
