"""A remote participant's journey on WeChat, through signed webhook requests: the meeting
page's temporary code (valid until the meeting ends) → scanned → name → city → the join
card with both times → the video link only in the live window."""

from __future__ import annotations

from datetime import timedelta

from tests.test_meetings import MEETING, meeting_of, scheduled, sent
from tests.test_wechat import (  # noqa: F401  (fixtures, by name)
    Start,
    fake,
    payload,
    reply_content,
    start,
)
from tests.world import build_world
from workflow.clock import FixedClock


async def test_a_remote_participant_on_wechat(start: Start, clock: FixedClock) -> None:  # noqa: F811
    h = await start()
    world = await build_world(h.services.sessions, clock)
    topic = await scheduled(world)
    meeting = await meeting_of(h.services, topic)
    # The page's WeChat code: a temporary one, valid until the meeting ends.
    code = await h.client.get(f"/m/{meeting.code}/wechat.png")
    assert code.status == 200 and code.content_type == "image/png"
    [made] = h.fake.calls("cgi-bin/qrcode/create")
    assert made.json["action_name"] == "QR_STR_SCENE"
    assert made.json["action_info"]["scene"]["scene_str"] == f"m_{meeting.code}"
    assert made.json["expire_seconds"] == int(
        (MEETING + timedelta(hours=2) - clock.now()).total_seconds()
    )

    scanned = reply_content(
        await (await h.post(payload("scan", EventKey=f"m_{meeting.code}"))).text()
    )
    assert scanned.startswith("欢迎参加协商会议「运河步道增设公厕」")
    assert await h.text("  ") == "请写下您希望显示的称呼。"
    assert "您现在住在哪里" in await h.text("伦敦的老陈")
    card = await h.text("伦敦")
    assert "老陈" in card and "您当地：3月10日（周二）04:00，伦敦时间" in card
    assert "1. 获取会议链接" in card
    # WeChat's customer-service messages carry no files: the card's link serves the .ics.
    assert f"/m/{meeting.code}.ics" in card and await sent(h.services, "meeting.ics") == []
    assert (await h.text("1")).startswith("视频会议链接将于")
    clock.set(MEETING - timedelta(minutes=5))
    assert await h.text("1") == "视频会议链接：https://meeting.tencent.com/dm/abc123"
