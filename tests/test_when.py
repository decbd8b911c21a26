"""Meeting times as people write them (workflow/when.py): understood, said back with the
weekday, or refused with a message that says what is missing."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from workflow.clock import CHINA
from workflow.when import BadTime, parse_when, say_when

#: Thursday 2026-12-03, 14:00 China time.
NOW = datetime(2026, 12, 3, 14, 0, tzinfo=CHINA)


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("12月9日19:00", "12月9日（周三）19:00，北京时间"),
        ("下周三晚上7点", "12月9日（周三）19:00，北京时间"),
        ("明天下午三点", "12月4日（周五）15:00，北京时间"),
        ("12月9日晚7点半", "12月9日（周三）19:30，北京时间"),
        ("十二月九日晚上七点", "12月9日（周三）19:00，北京时间"),
        ("2026年12月9日19时", "12月9日（周三）19:00，北京时间"),
        ("12月10日 19：30", "12月10日（周四）19:30，北京时间"),
        ("周五上午9:30", "12月4日（周五）09:30，北京时间"),
        ("周一 9点", "12月7日（周一）09:00，北京时间"),  # said on a Thursday: the next one
        ("下周日上午10点", "12月13日（周日）10:00，北京时间"),
        ("星期天下午两点一刻", "12月6日（周日）14:15，北京时间"),
        ("后天晚上八点", "12月5日（周六）20:00，北京时间"),
        ("今晚8点", "12月3日（周四）20:00，北京时间"),
        ("明晚7点", "12月4日（周五）19:00，北京时间"),
        ("明天19点30分", "12月4日（周五）19:30，北京时间"),
        ("中午12点", None),  # no day: refused below
        ("北京时间12月9日19:00开始", "12月9日（周三）19:00，北京时间"),
        ("1月5日9:00", "2027年1月5日（周二）09:00，北京时间"),  # January, written in December
        ("2020年1月1日10:00", "2020年1月1日（周三）10:00，北京时间"),  # understood; past
    ],
)
def test_times_as_people_write_them(written: str, meant: str | None) -> None:
    if meant is None:
        with pytest.raises(BadTime):
            parse_when(written, NOW)
        return
    assert say_when(parse_when(written, NOW), now=NOW) == meant


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("", "请写下会议时间"),
        ("开会吧", "没看懂“开会吧”是哪一天几点"),
        ("下周三", "请写上几点"),
        ("下午3点", "请写上哪一天"),
        ("12月32日19:00", "不是有效的日期或时刻"),
        ("明天25点", "不是有效的日期或时刻"),
        ("明天19:75", "不是有效的日期或时刻"),
        ("12月9日晚上12点", "“晚上12点”容易误会"),
        ("12月9日19:00和20:00", "没看懂"),
    ],
)
def test_what_is_not_one_time_is_refused_saying_why(written: str, message: str) -> None:
    with pytest.raises(BadTime, match=message):
        parse_when(written, NOW)


def test_said_in_another_zone_across_the_date_line() -> None:
    meeting = parse_when("12月9日19:00", NOW)
    assert meeting.tzinfo == CHINA
    assert (
        say_when(meeting, ZoneInfo("America/New_York"), zone_name="America/New_York")
        == "12月9日（周三）06:00，America/New_York"
    )
    assert say_when(meeting, ZoneInfo("Pacific/Auckland"), zone_name="奥克兰") == (
        "12月10日（周四）00:00，奥克兰"
    )
