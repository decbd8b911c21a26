"""Unfollow links: for pushes that cannot carry a button (a WeChat template message or
subscription notification), ``/unfollow/<t|r>/<id>/<person>?exp=<unix>&sig=<hmac>``.

Single-purpose: the HMAC-SHA256 (server secret) covers the purpose ``unfollow``, the
subject and the person, so the link can unfollow that person from that topic or room and
do nothing else, and cannot be made up for anyone else. Unlike a review link it is not
used up: unfollowing twice changes nothing the second time, and a message read weeks
later must still work, hence the long lifetime.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from workflow.follows import Subject
from workflow.signatures import same_secret

DEFAULT_LIFETIME = timedelta(days=365)
#: The letter in the path for each subject.
LETTERS: dict[Subject, str] = {"topic": "t", "room": "r"}
SUBJECTS: dict[str, Subject] = {letter: subject for subject, letter in LETTERS.items()}


@dataclass(frozen=True)
class UnfollowLinks:
    secret: bytes
    base_url: str
    lifetime: timedelta = DEFAULT_LIFETIME

    def signature(self, subject: Subject, subject_id: int, person_id: int, exp: int) -> str:
        message = f"unfollow:{LETTERS[subject]}:{subject_id}:{person_id}:{exp}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def verify(self, subject: Subject, subject_id: int, person_id: int, exp: str, sig: str) -> bool:
        """Whether ``sig`` is ours for these values (not whether it expired)."""
        if not exp.isdigit() or len(exp) > 12:
            return False
        return same_secret(self.signature(subject, subject_id, person_id, int(exp)), sig)

    def url(self, subject: Subject, subject_id: int, person_id: int, now: datetime) -> str:
        exp = int((now + self.lifetime).timestamp())
        query = urlencode({"exp": exp, "sig": self.signature(subject, subject_id, person_id, exp)})
        path = f"/unfollow/{LETTERS[subject]}/{subject_id}/{person_id}"
        return f"{self.base_url.rstrip('/')}{path}?{query}"
