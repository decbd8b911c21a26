"""The composition root: ``build_services(config)`` wires everything; nothing is global."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import time, timedelta
from functools import cached_property

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Config, ConfigError
from bot.edge import is_transient
from bot.identity import WorkerIdentity, lock_dir, take_identity
from bot.media import MediaDownloader, MediaFetcher
from bot.media_store import MediaStore, build_media_store
from bot.notice_files import NoticeStore
from bot.telegram import telegram_outbound
from bot.telegram.sender import build_limiter
from bot.wechat.outbound import wechat_outbound
from dialogs.inbox import Inbox
from dialogs.router import Dialogs, DialogSettings
from dialogs.throttle import LocalThrottle, RedisThrottle, redis_client
from notices.meeting_notices import MeetingNotices
from notices.notify import OutboxWriter, reply_later, tell
from notices.outbox import OutboxDispatcher, Sender, reclaim
from notices.poll_pushes import PollPushWriter
from notices.pushes import PushExpander, PushWriter
from notices.reminders import ReminderSettings, Sweeper
from storage.db import (
    SessionFactory,
    is_sqlite,
    make_engine,
    make_priority_engine,
    make_session_factory,
)
from storage.spool import Spool
from workflow.clock import CHINA, Clock, SystemClock
from workflow.engine import Lifecycle
from workflow.review_links import ReviewLinks
from workflow.unfollow_links import UnfollowLinks
from workflow.workdays import WorkdayCalendar

log = logging.getLogger("mashangyi")

#: Seconds keeping a late WeChat message may take (bot/wechat/webhook.py: the reply deadline
#: leaves about this much of WeChat's 5 seconds).
KEEP_TIMEOUT = 1.0


@dataclass
class Services:
    config: Config
    clock: Clock
    engine: AsyncEngine
    sessions: SessionFactory
    #: Records that a message went out (the outbox, the Telegram webhook): a small pool of its
    #: own, so that a send is never left unrecorded behind a wait for a busy shared pool.
    record_engine: AsyncEngine
    records: SessionFactory
    calendar: WorkdayCalendar
    lifecycle: Lifecycle
    dialogs: Dialogs
    media_store: MediaStore
    #: The printable notices' files (bot/notice_files.py), which the senders read too.
    notices: NoticeStore
    senders: dict[str, Sender] = field(default_factory=dict)
    #: Media fetchers by channel (platform media → bytes), used by the MediaDownloader.
    fetchers: dict[str, MediaFetcher] = field(default_factory=dict)
    #: Signs and issues review-page links (``/review/…``).
    review_links: ReviewLinks | None = None
    #: Signs the unfollow links of pushes (``/unfollow/…``).
    unfollow_links: UnfollowLinks | None = None
    #: Shared state of several serving processes (the flood limit), when configured.
    redis: Redis | None = None
    #: A small pool of its own for keeping a late message (dialogs/inbox.py), so that it
    #: does not wait behind the dialog steps that made it late; unlike ``records`` it gives
    #: up within a second (the message is then spooled or left unacknowledged).
    priority_engine: AsyncEngine | None = None
    #: This process's worker identity once taken (``take_worker_id``); None in tools.
    worker_id: str | None = None
    _identity: WorkerIdentity | None = field(default=None, repr=False)

    @cached_property
    def priority_sessions(self) -> SessionFactory:
        if self.priority_engine is None:
            return self.sessions
        return make_session_factory(self.priority_engine)

    async def take_worker_id(self, role: str) -> str:
        """Take this process's worker identity for ``role`` (bot/identity.py) and release the
        outbox rows its killed predecessor held. Call once, before serving or delivering."""
        if self._identity is not None:
            raise RuntimeError(f"this process is {self._identity.name} already")
        identity = take_identity(
            lock_dir(self.config.database_url), role, self.config.outbox.worker_id
        )
        self._identity, self.worker_id = identity, identity.name
        await reclaim(self.sessions, identity.name)
        return identity.name

    def dispatcher(
        self,
        *,
        channels: Collection[str] | None = None,
        addresses: Collection[str] | None = None,
        paced: bool = True,
    ) -> OutboxDispatcher:
        """The delivery loop; ``channels``/``addresses`` narrow it (the Telegram webhook
        catching up on one chat), ``paced=False`` sends a turn's replies together."""
        outbox = self.config.outbox
        senders = self.senders
        if channels is not None:
            senders = {c: s for c, s in senders.items() if c in channels}
        return OutboxDispatcher(
            self.sessions,
            senders,
            self.clock,
            addresses=addresses,
            paced=paced,
            max_attempts=outbox.max_attempts,
            base_backoff=timedelta(seconds=outbox.base_backoff_seconds),
            max_backoff=timedelta(seconds=outbox.max_backoff_seconds),
            batch_size=outbox.batch_size,
            worker_id=self.worker_id,
            records=self.records,
            is_transient=is_transient,
        )

    def push_expander(self) -> PushExpander:
        """Expands recorded pushes into outbox rows, ``[pushes] chunk_size`` at a time."""
        return PushExpander(
            self.sessions,
            self.clock,
            links=self.unfollow_links,
            chunk=self.config.pushes.chunk_size,
        )

    def media_downloader(self) -> MediaDownloader:
        return MediaDownloader(
            self.sessions,
            self.fetchers,
            self.media_store,
            self.clock,
            max_bytes=self.config.media.max_bytes,
        )

    def sweeper(self) -> Sweeper:
        """The scheduler's reminder sweeps (``[reminders]``), on the injected clock."""
        reminders = self.config.reminders
        return Sweeper(
            self.sessions,
            self.clock,
            self.calendar,
            ReminderSettings(
                work_start=time.fromisoformat(reminders.work_start),
                work_end=time.fromisoformat(reminders.work_end),
                escalate_after_days=reminders.escalate_after_days,
                meeting_reminders=tuple(
                    timedelta(minutes=m) for m in self.config.meetings.reminder_minutes
                ),
                sweep_interval=timedelta(minutes=reminders.sweep_minutes),
                satisfaction_after=timedelta(days=reminders.satisfaction_days),
            ),
            public_base_url=self.config.server.public_base_url,
            unfollow_links=self.unfollow_links,
        )

    def calendar_warning(self) -> str | None:
        """Set when the next 90 days are not all covered by real holiday data."""
        return self.calendar.coverage_warning(self.clock.now().astimezone(CHINA).date())

    @cached_property
    def spool(self) -> Spool:
        """Where a late WeChat message is kept while the database cannot take it."""
        return Spool(self.config.spool_dir())

    def inbox(self) -> Inbox:
        return Inbox(self.sessions, self.dialogs, is_transient, self.spool)

    async def close(self) -> None:
        await self.engine.dispose()
        if self.priority_engine is not None:
            await self.priority_engine.dispose()
        if self.record_engine is not self.engine:
            await self.record_engine.dispose()
        if self._identity is not None:
            self._identity.release()
            self._identity = None
        if self.redis is not None:
            await self.redis.aclose()
        await self.media_store.close()


def build_calendar(config: Config) -> WorkdayCalendar:
    calendar = config.calendar
    return WorkdayCalendar.load(
        config.holiday_table_paths(),
        extra_holidays=calendar.extra_holidays,
        extra_workdays=calendar.extra_workdays,
    )


def build_review_links(config: Config) -> ReviewLinks:
    """Review links signed with ``server.secret_key``; without it a random key, refused when
    a WeChat account is configured (only WeChat's fallback sends the links: signed with a
    key that dies with the process, every link sent would die at the next restart)."""
    secret = config.server.secret_key.get_secret_value()
    if not secret and config.wechat.app_id:
        raise ConfigError(
            "server.secret_key: required when wechat.app_id is set (it signs review links, "
            "which must outlive a restart); set MASHANGYI_SERVER_SECRET_KEY to a long random "
            "string, e.g. `openssl rand -hex 32`"
        )
    key = secret.encode() if secret else secrets.token_bytes(32)
    return ReviewLinks(
        key,
        config.server.public_base_url,
        timedelta(hours=config.review.link_hours),
    )


def build_unfollow_links(config: Config, review_links: ReviewLinks) -> UnfollowLinks:
    """Unfollow links, signed with the review links' key (the server secret, or the
    process's random key where no WeChat account needs links to outlive a restart); the
    signed text names its purpose, so one kind of link cannot pass for the other."""
    return UnfollowLinks(
        review_links.secret,
        config.server.public_base_url,
        timedelta(days=config.pushes.unfollow_link_days),
    )


def build_services(config: Config, clock: Clock | None = None) -> Services:
    clock = clock or SystemClock()
    engine = make_engine(config.database_url)
    # Each use is one short UPDATE: a few connections never keep anyone waiting long.
    # SQLite takes one writer at a time anyway: there a second pool would gain nothing.
    record_engine = (
        engine
        if is_sqlite(config.database_url)
        else make_engine(config.database_url, pool_size=2, max_overflow=4)
    )
    calendar = build_calendar(config)
    review_links = build_review_links(config)
    writer = OutboxWriter(clock, config.server.public_base_url, calendar, review_links)
    pushes = PushWriter(clock, config.server.public_base_url)
    lifecycle = Lifecycle(
        clock,
        calendar,
        review_days=config.review.working_days,
        listeners=[writer, pushes, MeetingNotices(clock, config.server.public_base_url)],
        poll_listeners=[PollPushWriter(clock, config.server.public_base_url)],
    )
    sessions = make_session_factory(engine)
    records = make_session_factory(record_engine)
    dialogs = config.dialogs
    media_store = build_media_store(config)
    font = config.poster.font
    notices = NoticeStore(
        sessions,
        media_store,
        config.server.public_base_url,
        config.base_dir / font if font else None,
        clock=clock,
    )
    wechat_senders, wechat_fetchers = wechat_outbound(config, sessions, clock, notices)
    redis = redis_client(config.redis.url) if config.redis.url else None
    # The Telegram sender remembers a sent review card between the send and its record:
    # on the results' pool, for the same reason the record is there.
    telegram_senders, telegram_fetchers = telegram_outbound(
        config, records, clock, build_limiter(config, redis, clock), notices
    )
    flood = (dialogs.flood_messages, dialogs.flood_seconds)
    return Services(
        config=config,
        clock=clock,
        engine=engine,
        sessions=sessions,
        record_engine=record_engine,
        records=records,
        calendar=calendar,
        lifecycle=lifecycle,
        dialogs=Dialogs(
            sessions,
            lifecycle,
            clock,
            tell,
            DialogSettings(
                idle_minutes=dialogs.idle_minutes,
                flood_messages=dialogs.flood_messages,
                flood_seconds=dialogs.flood_seconds,
                sensitive_words=tuple(config.sensitive_words()),
                public_base_url=config.server.public_base_url,
                subscribe_template_id=config.wechat.subscribe_template_id,
                max_upload_bytes=config.media.max_bytes,
            ),
            RedisThrottle(redis, *flood) if redis is not None else LocalThrottle(*flood),
            reply_later,
        ),
        media_store=media_store,
        notices=notices,
        # No console sender: only the terminal chat delivers to its own person (bot/console.py);
        # a serving process that claimed those rows could only log them.
        senders={**wechat_senders, **telegram_senders},
        fetchers={**wechat_fetchers, **telegram_fetchers},
        review_links=review_links,
        unfollow_links=build_unfollow_links(config, review_links),
        redis=redis,
        priority_engine=make_priority_engine(config.database_url, KEEP_TIMEOUT),
    )
