"""Role invites and role grants: the only way a chat identity gets a role in a room.

An invite is one-time and expiring. Its secret travels in a Telegram deep link / WeChat
scene string (``i_<secret>``); the database keeps only its SHA-256, so a leaked database
gives no usable invite. Opening an invite (``redeem``) marks it used with a conditional
update — of two people opening one invite at once exactly one wins — and creates the grant
in the same transaction. Every grant, revocation and refused use is written to the audit
log (``workflow.audit``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Invite, RoleGrant, Room
from workflow import audit
from workflow.clock import CHINA
from workflow.lifecycle import Role
from workflow.people import live_grant

#: Roles an invite can carry; admin is never handed out through a link.
INVITE_ROLES: tuple[str, ...] = (
    Role.CONVENER,
    Role.PARTY,
    Role.OPERATOR,
    Role.MEMBER,
    Role.GRID,
    Role.SUPERVISOR,
    Role.IMPLEMENTER,
)
#: WeChat temporary QR codes live at most 30 days; an invite no longer than its code.
MAX_VALIDITY = timedelta(days=30)
#: 32 random bytes → 43 URL-safe characters; with "i_" 45 of the 64 a payload may have.
SECRET_BYTES = 32
#: What ``secrets.token_urlsafe`` produces (no padding): anything else is not ours.
SECRET_FORMAT = re.compile(r"[A-Za-z0-9_-]{43}")

Outcome = Literal["granted", "held", "unknown", "used", "expired", "revoked"]


class RoleAdminError(Exception):
    """An operator's request that cannot be done; the message says why in one line."""


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


async def create_invite(
    session: AsyncSession,
    *,
    room: Room,
    role: str,
    secret: str,
    now: datetime,
    validity: timedelta,
    created_by_id: int | None = None,
) -> Invite:
    """Store an invite for ``secret`` (only its hash) and audit it."""
    if role not in INVITE_ROLES:
        raise RoleAdminError(f"role must be one of {', '.join(INVITE_ROLES)}, not {role!r}")
    if not timedelta(0) < validity <= MAX_VALIDITY:
        raise RoleAdminError("an invite is valid for more than nothing and at most 30 days")
    if not SECRET_FORMAT.fullmatch(secret):
        raise RoleAdminError("the secret must come from new_secret()")
    assert room.id is not None
    invite = Invite(
        secret_hash=secret_hash(secret),
        room_id=room.id,
        role=role,
        created_by_id=created_by_id,
        created_at=now,
        expires_at=now + validity,
    )
    session.add(invite)
    await session.flush()
    await audit.record(
        session,
        "invite.create",
        at=now,
        actor_id=created_by_id,
        invite_id=invite.id,
        room=room.code,
        role=role,
        expires_at=invite.expires_at.isoformat(),
    )
    return invite


async def revoke_invite(
    session: AsyncSession, invite_id: int, now: datetime, actor_id: int | None = None
) -> Invite:
    """Make an unused invite unusable; refuses one already used or revoked."""
    invite = await session.get(Invite, invite_id)
    if invite is None:
        raise RoleAdminError(f"no invite with id {invite_id}")
    result = await session.exec(
        update(Invite)
        .where(
            col(Invite.id) == invite_id,
            col(Invite.used_at).is_(None),
            col(Invite.revoked_at).is_(None),
        )
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.refresh(invite)
    if result.rowcount != 1:
        if invite.revoked_at is not None:
            raise RoleAdminError(
                f"invite {invite_id} was already revoked at {_iso(invite.revoked_at)}"
            )
        raise RoleAdminError(
            f"invite {invite_id} was already used at {_iso(invite.used_at)} by person "
            f"#{invite.used_by_id}; revoke the role instead (`mashangyi roles list`, "
            "`mashangyi roles revoke GRANT_ID`)"
        )
    await audit.record(
        session,
        "invite.revoke",
        at=now,
        actor_id=actor_id,
        invite_id=invite.id,
        room_id=invite.room_id,
        role=invite.role,
    )
    return invite


@dataclass(frozen=True)
class Redemption:
    """What opening an invite came to. ``granted``/``held``: the person now holds the role
    (newly, or already before); anything else is a refusal that changed nothing."""

    outcome: Outcome
    invite: Invite | None = None
    room: Room | None = None
    grant: RoleGrant | None = None
    #: A refusal as "used" where the person themself used it and still holds the role.
    already_theirs: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome in ("granted", "held")


async def redeem(
    session: AsyncSession, secret: str, person_id: int, now: datetime, *, channel: str = ""
) -> Redemption:
    """Open the invite for ``secret`` as ``person_id``, in the caller's transaction."""
    invite = None
    if SECRET_FORMAT.fullmatch(secret):
        invite = (
            await session.exec(select(Invite).where(Invite.secret_hash == secret_hash(secret)))
        ).first()
    if invite is None:
        await audit.record(
            session, "invite.refuse", at=now, actor_id=person_id, reason="unknown", channel=channel
        )
        return Redemption("unknown")
    room = await session.get(Room, invite.room_id)
    assert room is not None and room.id is not None and invite.id is not None
    # The one check that counts: used, revoked and expired are decided by the database
    # row at the moment of the update, so two people racing cannot both win.
    won = await session.exec(
        update(Invite)
        .where(
            col(Invite.id) == invite.id,
            col(Invite.used_at).is_(None),
            col(Invite.revoked_at).is_(None),
            col(Invite.expires_at) > now,
        )
        .values(used_at=now, used_by_id=person_id)
        .execution_options(synchronize_session=False)
    )
    if won.rowcount != 1:
        await session.refresh(invite)  # what the winner (or the operator) committed
        reason = refusal(invite, now)
        await audit.record(
            session,
            "invite.refuse",
            at=now,
            actor_id=person_id,
            reason=reason,
            channel=channel,
            invite_id=invite.id,
            room=room.code,
            role=invite.role,
        )
        theirs = (
            reason == "used"
            and invite.used_by_id == person_id
            and await live_grant(session, person_id, room.id, invite.role) is not None
        )
        return Redemption(reason, invite, room, already_theirs=theirs)
    set_committed_value(invite, "used_at", now)
    set_committed_value(invite, "used_by_id", person_id)

    grant = await live_grant(session, person_id, room.id, invite.role)
    if grant is not None:
        await audit.record(
            session,
            "invite.use",
            at=now,
            actor_id=person_id,
            invite_id=invite.id,
            grant_id=grant.id,
            room=room.code,
            role=invite.role,
            already_held=True,
        )
        return Redemption("held", invite, room, grant)
    grant = RoleGrant(
        person_id=person_id,
        room_id=room.id,
        role=invite.role,
        granted_by_id=invite.created_by_id,
        granted_at=now,
        invite_id=invite.id,
    )
    session.add(grant)
    await session.flush()
    await audit.record(
        session,
        "role.grant",
        at=now,
        actor_id=person_id,
        grant_id=grant.id,
        person_id=person_id,
        room=room.code,
        role=invite.role,
        invite_id=invite.id,
        granted_by_id=invite.created_by_id,
        channel=channel,
    )
    return Redemption("granted", invite, room, grant)


def refusal(invite: Invite, now: datetime) -> Outcome:
    """Why ``invite`` cannot be opened now (in this order: revoked, used, expired)."""
    if invite.revoked_at is not None:
        return "revoked"
    if invite.used_at is not None:
        return "used"
    if invite.expires_at <= now:
        return "expired"
    raise AssertionError("the invite is usable")  # pragma: no cover


async def revoke_grant(
    session: AsyncSession, grant_id: int, now: datetime, actor_id: int | None = None
) -> RoleGrant:
    """End a grant (it stays, with ``revoked_at``); refuses one already revoked."""
    grant = await session.get(RoleGrant, grant_id)
    if grant is None:
        raise RoleAdminError(f"no role grant with id {grant_id} (see `mashangyi roles list`)")
    result = await session.exec(
        update(RoleGrant)
        .where(col(RoleGrant.id) == grant_id, col(RoleGrant.revoked_at).is_(None))
        .values(revoked_at=now, revoked_by_id=actor_id)
        .execution_options(synchronize_session=False)
    )
    await session.refresh(grant)
    if result.rowcount != 1:
        raise RoleAdminError(
            f"role grant {grant_id} was already revoked at {_iso(grant.revoked_at)}"
        )
    room = await session.get(Room, grant.room_id)
    await audit.record(
        session,
        "role.revoke",
        at=now,
        actor_id=actor_id,
        grant_id=grant.id,
        person_id=grant.person_id,
        room=room.code if room else None,
        role=grant.role,
    )
    return grant


def _iso(moment: datetime | None) -> str:
    return moment.astimezone(CHINA).strftime("%Y-%m-%d %H:%M (China time)") if moment else "-"
