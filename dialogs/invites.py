"""Opening a role invite: a Telegram ``/start i_<secret>`` or a WeChat scan / follow with
scene ``i_<secret>``. On success the person holds the role in the invite's room, that room
becomes their current room, and they are told so; every refusal says why and changes
nothing (it is audited by ``workflow.invites.redeem``)."""

from __future__ import annotations

from dialogs import home
from dialogs.conversation import Conversation, say
from dialogs.handlers import Handlers, on
from workflow.clock import CHINA
from workflow.invites import redeem as redeem_invite
from workflow.payloads import START_INVITE
from workflow.texts import label


async def redeem(conv: Conversation, secret: str) -> None:
    assert conv.person.id is not None
    result = await redeem_invite(
        conv.session, secret, conv.person.id, conv.now, channel=conv.inbound.channel
    )
    invite, room = result.invite, result.room
    if not result.ok or invite is None or room is None:
        if result.outcome == "used" and result.already_theirs and invite and room:
            conv.reply(
                say("invites", "already_theirs", room=room.name, role=label("roles", invite.role))
            )
        elif result.outcome == "expired" and invite:
            when = invite.expires_at.astimezone(CHINA)
            conv.reply(
                say(
                    "invites",
                    "expired",
                    when=f"{when.year}年{when.month}月{when.day}日 {when:%H:%M}",
                )
            )
        else:
            conv.reply(say("invites", result.outcome))
        return
    conv.home()
    conv.data["room"] = room.code
    conv.reply(
        say("invites", result.outcome, room=room.name, role=label("roles", invite.role)),
        *await home.menu_buttons(conv),
    )


HANDLERS = Handlers("invites", starts=[on(START_INVITE, redeem)])
