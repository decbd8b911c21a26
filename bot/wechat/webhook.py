"""The WeChat official-account webhook, ``/wechat``.

GET: URL verification (echo ``echostr`` back). POST: a message or event, in the message
mode configured as ``wechat.message_mode`` (the admin console's 明文/兼容/安全模式; see
envelope.py).

Each request: verify, read, decrypt and parse (envelope.py) → ``Inbound`` →
``Dialogs.handle`` → one passive text reply, sealed as the request was.

WeChat waits 5 seconds for the reply and retries the same message up to twice; the dialogs
deduplicate by ``message_id`` and hand a retry the same replies. A step that misses the
deadline is acknowledged only once the message is durably kept (dialogs/inbox.py): then the
person is told it will be answered, and the replies follow as customer-service messages; a
message that cannot even be kept is not acknowledged (503), so WeChat delivers it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import exc as sa_exc
from wechatpy.messages import (
    BaseMessage,
)

from bot.pieces import split_text, utf8_bytes
from bot.wechat.client import TEXT_BYTES, WeChatAPI
from bot.wechat.envelope import PARSE_ERRORS, Envelope, Forbidden, TooLarge
from bot.wechat.messages import (
    CHANNEL,
    OPENID_MAX,
    SAY,
    render_text_reply,
    reply_text,
    to_inbound,
)
from dialogs.inbox import keep, spool_record
from dialogs.router import Answered, Handled
from dialogs.types import Inbound
from notices.message import OutboundMessage
from notices.notify import reply_later
from notices.outbox import enqueue
from storage.db import transaction
from workflow.consents import EVENTS as CONSENT_EVENTS
from workflow.consents import record_consents

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)


#: The running webhook, for tests and operators that tune it.
WEBHOOK: web.AppKey[WeChatWebhook] = web.AppKey("wechat_webhook")
#: Seconds we wait for the dialogs before answering; WeChat gives up at 5.
REPLY_DEADLINE = 3.5
#: Seconds we give keeping a late message (one small insert on a pool of its own) before
#: leaving it unacknowledged instead.
KEEP_DEADLINE = 1.0
#: On shutdown, how long late dialog steps may take to finish (their messages are kept
#: anyway: one that has not finished is handled from the queue after the restart).
DRAIN_SECONDS = 10.0
#: How many spooled message ids, and answers to handled ones, a process remembers (WeChat
#: retries within 15 s).
MAX_SPOOLED = MAX_REMEMBERED = 10_000
#: Answering this (or an empty body) tells WeChat "received, nothing to say".
SUCCESS = "success"


def setup(app: web.Application, services: Services) -> None:
    """Add ``/wechat`` when a callback token is configured; close the API client on exit."""
    if services.config.wechat.token.get_secret_value():
        hook = WeChatWebhook(services)
        app[WEBHOOK] = hook
        app.router.add_get("/wechat", hook.verify_url)
        app.router.add_post("/wechat", hook.receive)
        # After the server has finished its requests, before the database closes.
        app.on_cleanup.append(hook.drain)
    # The sender and the media fetcher share one API client (one HTTP session).
    outbound = [*services.senders.values(), *services.fetchers.values()]
    apis = {id(api): api for o in outbound if isinstance(api := getattr(o, "api", None), WeChatAPI)}
    if apis:

        async def close(_app: web.Application) -> None:
            for api in apis.values():
                await api.close()

        app.on_cleanup.append(close)


class WeChatWebhook:
    def __init__(self, services: Services) -> None:
        wechat = services.config.wechat
        self.services = services
        self.reply_deadline = REPLY_DEADLINE
        self.drain_seconds = DRAIN_SECONDS
        #: Steps still running (also those whose delivery was answered already).
        self._late: set[asyncio.Future[Any]] = set()
        self._inflight: dict[str, asyncio.Future[Handled]] = {}
        self._answers: dict[str, Answered] = {}
        #: Messages this process kept in the spool: a re-delivery is answered from here.
        self._spooled: OrderedDict[str, None] = OrderedDict()
        #: Passive replies to messages handled here, by message id (see ``_remember``).
        self._replied: OrderedDict[str, str] = OrderedDict()
        self.envelope = Envelope(wechat, services.clock)

    async def verify_url(self, request: web.Request) -> web.Response:
        """The admin console's "submit URL" check: echo ``echostr`` when signed by us."""
        try:
            self.envelope.check(request.query)
        except Forbidden:
            return web.Response(status=403, text="forbidden")
        echostr = request.query.get("echostr")
        if not echostr:
            return web.Response(status=400, text="no echostr")
        return web.Response(text=echostr)

    async def receive(self, request: web.Request) -> web.Response:
        try:
            message, safe = await self.envelope.decode(request)
            inbound = to_inbound(message)
        except Forbidden:
            return web.Response(status=403, text="forbidden")
        except TooLarge:
            return web.Response(status=413, text="too large")
        except PARSE_ERRORS as exc:
            log.info("wechat: refused a body: %s: %s", type(exc).__name__, exc)
            return web.Response(status=400, text="bad request")
        if str(message._data.get("Event", "")).lower() in CONSENT_EVENTS:
            return await self.consent(message)
        if inbound is None:  # an event we do not act on
            return web.Response(text=SUCCESS)
        text = await self.answer(inbound)
        if text is None:  # not kept: no acknowledgement, so WeChat delivers it again
            return web.Response(status=503, text="busy")
        text, *overflow = split_text(text, TEXT_BYTES, utf8_bytes)
        if overflow:  # a passive reply is one message: the rest follows through the outbox
            try:
                await self._send_later(
                    inbound, "overflow", [OutboundMessage(text=p) for p in overflow]
                )
            except Exception as exc:
                # Unacknowledged: WeChat's retry gets the stored replies and tries again.
                log.warning("wechat: the rest of a long reply was not kept (%r)", exc)
                return web.Response(status=503, text="busy")
        return self.respond(message, text, request.query, safe)

    async def consent(self, message: BaseMessage) -> web.Response:
        """A subscription pop-up answered, or the choice changed in the settings: recorded
        (a re-delivery is one consent), then acknowledged; unrecorded, not acknowledged,
        so WeChat delivers it again."""
        openid = message.source or ""
        if not openid or len(openid) > OPENID_MAX:
            return web.Response(text=SUCCESS)
        wechat = self.services.config.wechat
        try:
            async with transaction(self.services.sessions) as session:
                await record_consents(
                    session,
                    openid,
                    message._data,
                    self.services.clock.now(),
                    long_term=wechat.subscribe_long_term,
                )
        except Exception as exc:
            log.warning("wechat: a consent event was not recorded (%r)", exc)
            return web.Response(status=503, text="busy")
        return web.Response(text=SUCCESS)

    async def answer(self, inbound: Inbound) -> str | None:
        """The passive reply's text ("": nothing to say), or None when the message was
        neither handled nor kept and must not be acknowledged.

        A slow step (a busy database) is not cancelled: it goes on in the background and
        its replies go out through the outbox, as customer-service messages (the person has
        just written, so the window is open). A re-delivery of a message still being
        handled here joins that step instead of starting a second one.
        """
        if inbound.message_id in self._spooled:
            return SAY.text("wechat", "kept")  # kept on disk: handled from there, once
        task = self._inflight.get(inbound.message_id)
        if task is None:
            answered = Answered()
            task = asyncio.ensure_future(self.services.dialogs.process(inbound, answered=answered))
            self._track(inbound.message_id, task, answered)
        await asyncio.wait({task}, timeout=self.reply_deadline)
        if task.done() and not task.cancelled() and task.exception() is None:
            return self._remember(inbound, task.result())
        now = self.services.clock.now()
        try:
            receipt = await asyncio.wait_for(
                keep(self.services.priority_sessions, inbound, now),
                KEEP_DEADLINE * 2,  # a backstop: the pool and SQLite give up after KEEP_DEADLINE
            )
        except Exception as exc:
            log.warning("wechat: the database cannot keep %s (%r)", inbound.message_id, exc)
            if busy(exc):
                # The database answers, slowly: leave it unacknowledged (WeChat delivers it
                # again, and its receipt answers then). The spool is for a database that is
                # away; a busy one may still commit this step, and a copy on disk of a
                # message already answered could not be told from one that was not.
                return None
            return await self._spool(inbound, task, now)
        if receipt.status == "queued":
            return SAY.text("wechat", "kept")
        # Handled in the meantime (by this step or another delivery's): its stored answer.
        handled = Handled(receipt.replies, deferred=receipt.queued_at is not None)
        return self._remember(inbound, handled)

    def _remember(self, inbound: Inbound, handled: Handled) -> str:
        """The passive reply to a handled message, remembered for a re-delivery that finds
        the database away: WeChat retries when our answer did not reach it, maybe just as
        the database goes, and the person must then get the same answer, not "kept"."""
        text = self._passive(handled)
        waiting = handled.deferred and not handled.replies  # kept behind an older one
        if handled.refused is None and not waiting and inbound.message_id:
            self._replied[inbound.message_id] = text
            if len(self._replied) > MAX_REMEMBERED:
                self._replied.popitem(last=False)
        return text

    async def _spool(
        self, inbound: Inbound, task: asyncio.Future[Handled], now: datetime
    ) -> str | None:
        """Keep the message on local disk; the spool's import queues it once the database
        is back. A step still running goes on (cancelling one mid-statement can leave an
        SQLite connection holding the write lock), told that its message is answered:
        committing from then on, it sends its replies through the outbox; one that
        committed while the spool was written gets them sent by ``_reply_after``."""
        if task.done() and not task.cancelled() and task.exception() is None:
            return self._remember(inbound, task.result())  # it finished meanwhile, just in time
        replied = self._replied.get(inbound.message_id)
        if replied is not None:  # handled here before: what its receipt says
            return replied
        try:
            await self.services.spool.append(spool_record(inbound, now))
        except OSError as exc:
            log.error("wechat: cannot keep %s on disk either (%r)", inbound.message_id, exc)
            return None  # not acknowledged: the step, if it finishes, answers the retry
        answered = self._answers.get(inbound.message_id)
        if answered is not None:
            answered.late = True
        follow = asyncio.ensure_future(self._reply_after(inbound, task))
        self._late.add(follow)
        follow.add_done_callback(self._late.discard)
        self._spooled[inbound.message_id] = None
        if len(self._spooled) > MAX_SPOOLED:
            self._spooled.popitem(last=False)
        return SAY.text("wechat", "kept")

    async def _reply_after(self, inbound: Inbound, task: asyncio.Future[Handled]) -> None:
        """The replies of a step that committed without knowing its message was answered
        from the spool (a moment before the mark): through the outbox, as a late one would."""
        try:
            handled = await asyncio.shield(task)
        except Exception:
            return  # failed: the spooled copy is queued and handled from there
        if handled.deferred or handled.repeated or handled.refused or not handled.replies:
            return
        try:
            async with transaction(self.services.sessions) as session:
                await reply_later(
                    session,
                    channel=CHANNEL,
                    address=inbound.user_ref,
                    message_id=inbound.message_id,
                    replies=handled.replies,
                    now=self.services.clock.now(),
                )
        except Exception:
            log.error("wechat: the replies to %s are lost", inbound.message_id, exc_info=True)

    def _passive(self, handled: Handled) -> str:
        # A refused message is told so every time (a passive reply costs nothing): never an
        # empty "success" for a message that was not handled.
        if handled.deferred:
            # Its replies go (or went) as customer-service messages; kept behind an older
            # message, it has none yet and the person is told it will be answered.
            return "" if handled.replies else SAY.text("wechat", "kept")
        return reply_text(handled.replies)

    def _track(self, message_id: str, task: asyncio.Future[Handled], answered: Answered) -> None:
        self._inflight[message_id] = task
        self._answers[message_id] = answered
        self._late.add(task)

        def forget(done: asyncio.Future[Handled]) -> None:
            self._late.discard(done)
            if self._inflight.get(message_id) is done:
                del self._inflight[message_id]
                del self._answers[message_id]
            if not done.cancelled() and done.exception() is not None:
                # Logged here so no failure goes unseen; the message is kept (or was never
                # acknowledged) and is handled again from the queue or WeChat's retry.
                log.warning("wechat: dialog step for %s failed: %r", message_id, done.exception())

        task.add_done_callback(forget)

    async def drain(self, _app: web.Application | None = None) -> None:
        """On shutdown: let late steps finish, for at most ``drain_seconds``; the rest are
        cancelled (their messages are kept, and handled from the queue after the restart)."""
        pending = set(self._late)
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=self.drain_seconds)
        for task in still:
            task.cancel()
        if still:
            log.warning("wechat: %d late steps left to the queue at shutdown", len(still))
            await asyncio.wait(still)

    async def _send_later(
        self, inbound: Inbound, tag: str, messages: list[OutboundMessage]
    ) -> None:
        """Replies as customer-service messages, through the outbox, in order (the person
        has just written, so their window is open). A retried message has the same keys."""
        async with transaction(self.services.sessions) as session:
            for number, message in enumerate(messages):
                await enqueue(
                    session,
                    key=f"wechat:{tag}:{inbound.message_id or id(messages)}:{number}",
                    channel=CHANNEL,
                    address=inbound.user_ref,
                    kind="dialog.reply",
                    message=message,
                    now=self.services.clock.now(),
                )

    def respond(
        self, message: BaseMessage, text: str, query: Mapping[str, str], safe: bool
    ) -> web.Response:
        if not text:
            return web.Response(text=SUCCESS)
        now = int(self.services.clock.now().timestamp())
        xml = render_text_reply(message, text, now)
        if safe:
            xml = self.envelope.seal(xml, query, now)
        return web.Response(text=xml, content_type="application/xml")


def busy(exc: BaseException) -> bool:
    """A database that is there but too busy: a wait that ran out (the pool, our deadline)
    or SQLite's lock held by another writer."""
    if isinstance(exc, TimeoutError | sa_exc.TimeoutError):
        return True
    text = str(exc).lower()
    return isinstance(exc, sa_exc.OperationalError) and ("locked" in text or "busy" in text)
