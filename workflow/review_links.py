"""Review links: a web page where a reviewer outside the WeChat customer-service window
handles one topic (``/review/<token>?exp=<unix>&sig=<hmac>``).

The token is a ``ButtonRef`` with action ``review_page``, bound to one person, one topic
and the topic's version, honoured once (``workflow.refs.use_ref``). The signature is
HMAC-SHA256 with the server secret over the token and the expiry, so a link can neither be
made up nor kept alive longer: the signed link is the capability, no login or CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import ButtonRef, Topic
from workflow.refs import REVIEW_PAGE
from workflow.signatures import same_secret

DEFAULT_LIFETIME = timedelta(hours=72)


@dataclass(frozen=True)
class ReviewLinks:
    secret: bytes
    base_url: str
    lifetime: timedelta = DEFAULT_LIFETIME

    def signature(self, token: str, exp: int) -> str:
        message = f"review:{token}:{exp}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def verify(self, token: str, exp: str, sig: str) -> bool:
        """Whether ``sig`` is ours for this token and expiry (not whether it expired)."""
        if not exp.isdigit() or len(exp) > 12:
            return False
        return same_secret(self.signature(token, int(exp)), sig)

    def url(self, token: str, exp: int) -> str:
        query = urlencode({"exp": exp, "sig": self.signature(token, exp)})
        return f"{self.base_url.rstrip('/')}/review/{token}?{query}"

    async def issue(
        self, session: AsyncSession, person_id: int, topic: Topic, now: datetime
    ) -> str:
        """A fresh link for ``person_id`` to handle ``topic`` as it is now."""
        assert topic.id is not None
        token = secrets.token_urlsafe(12)
        session.add(
            ButtonRef(
                token=token,
                person_id=person_id,
                topic_id=topic.id,
                action=REVIEW_PAGE,
                topic_version=topic.version,
                created_at=now,
            )
        )
        await session.flush()
        return self.url(token, int((now + self.lifetime).timestamp()))
