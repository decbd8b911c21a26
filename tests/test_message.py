"""The outgoing message's JSON form: what ``to_json`` writes reads back the same, bodies
written before it had a version (version 0) still read, anything else is refused."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from notices.message import VERSION, FileRef, OutboundMessage, UnreadableBody
from workflow.payloads import Button

FULL = OutboundMessage(
    text="新议题待初审：运河步道增设公厕\n\n请于3月9日前完成初审",
    buttons=(Button("受理", "b:tok-1"), Button("不予受理", "b:tok-2")),
    url="https://bot.example.org/t/D1-2026-000001",
    review_url="https://bot.example.org/review/abc?exp=1&sig=x",
    topic_number="D1-2026-000001",
)


@pytest.mark.parametrize(
    "message",
    [
        OutboundMessage(),
        FULL,
        OutboundMessage(text="已由张三处理", edit_message_id="77"),
        OutboundMessage(text="含\x7f控制符与 emoji 🙂", buttons=(Button("我的议题", "m:mine"),)),
        OutboundMessage(
            text="公示（图片）",
            file=FileRef("notices/D1-2026-000001-topic-v4.png", "公示.png", "image"),
        ),
    ],
)
def test_a_message_reads_back_as_written_through_a_json_column(message: OutboundMessage) -> None:
    stored = json.loads(json.dumps(message.to_json(), ensure_ascii=False))
    assert stored["v"] == VERSION
    assert OutboundMessage.from_json(stored) == message


#: Version 0, exactly as each producer wrote it before the model (no "v").
V0: list[tuple[dict[str, Any], OutboundMessage]] = [
    # notices/notify.py, a reviewer's card
    (
        {
            "text": FULL.text,
            "topic_number": "D1-2026-000001",
            "url": FULL.url,
            "buttons": [["受理", "b:tok-1"], ["不予受理", "b:tok-2"]],
            "review_url": FULL.review_url,
        },
        FULL,
    ),
    # notices/notify.py, a handled card to edit
    (
        {"text": "已由张三处理", "edit_message_id": "77"},
        OutboundMessage(text="已由张三处理", edit_message_id="77"),
    ),
    # notices/reminders/, a digest
    ({"text": "待办2件", "topic_number": "", "url": ""}, OutboundMessage(text="待办2件")),
    # notices/notify.py tell / dialogs' replies, with and without buttons
    (
        {"text": "请确认联名", "buttons": [["确认联名", "cs:x:y"]]},
        OutboundMessage(text="请确认联名", buttons=(Button("确认联名", "cs:x:y"),)),
    ),
    ({"text": "收到", "buttons": []}, OutboundMessage(text="收到")),
    # bot/telegram's replies, bot/wechat's overflow
    ({"text": "收到"}, OutboundMessage(text="收到")),
    ({}, OutboundMessage()),
]


@pytest.mark.parametrize("body, expected", V0)
def test_bodies_written_before_the_version_still_read(
    body: dict[str, Any], expected: OutboundMessage
) -> None:
    assert OutboundMessage.from_json(body) == expected


def test_a_version_1_body_reads_with_no_file() -> None:
    body = {key: value for key, value in FULL.to_json().items() if key != "file"} | {"v": 1}
    assert OutboundMessage.from_json(body) == FULL


@pytest.mark.parametrize(
    "body, reason",
    [
        ({"v": 3, "text": "来自未来"}, "version 3"),
        ({"v": 2, "file": {"key": "k", "filename": "a.pdf", "kind": "video"}}, "file is not"),
        ({"v": 2, "file": {"key": "", "filename": "a.pdf", "kind": "document"}}, "file is not"),
        ({"v": "1", "text": "版本是字符串"}, "version '1'"),
        ({"v": True, "text": "版本是布尔值"}, "version True"),
        ({"text": "按钮坏了", "buttons": [["只有标签"]]}, "not [label, payload]"),
        ({"text": "按钮坏了", "buttons": "受理"}, "buttons is a str"),
        ({"text": ["不是文字"]}, "text is a list"),
        ({"text": "编辑谁", "edit_message_id": {"id": 1}}, "edit_message_id is a dict"),
        (["不是对象"], "not an object"),
    ],
)
def test_a_body_of_another_version_or_shape_is_refused_saying_why(body: Any, reason: str) -> None:
    with pytest.raises(UnreadableBody, match=re.escape(reason)):
        OutboundMessage.from_json(body)
