"""The one-time ``state`` of a WeChat web authorization (网页授权): the page that sent a
person to WeChat's authorize page, kept until WeChat sends them back.

Only the SHA-256 of the state is stored (the address WeChat redirects to is the only copy
of the state itself); a state is used once (``used_at``) and expires. Imported by
``storage.models`` so that the metadata always holds the table.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field

from storage.models import _Table
from storage.types import UTCDateTime


class WebAuthState(_Table, table=True):
    __tablename__ = "web_auth_states"
    id: int | None = Field(default=None, primary_key=True)
    state_hash: str = Field(max_length=64, unique=True)
    #: The local page to return to (a path of ours, e.g. /t/<number>).
    next_path: str = Field(max_length=200)
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
