"""``mashangyi calendar import``: the State Council's notice in, the year's table out.

tests/notices/2025.txt and 2026.txt are the two notices' texts as reconstructed from the
chinese-calendar package's data and the published wording (see their first lines); the
import must give exactly the package's holidays and make-up working days for those years.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import chinese_calendar
import pytest

from bot.cli import main
from bot.config import load_config
from bot.services import build_calendar
from workflow.holiday_notice import parse_notice
from workflow.workdays import WorkdayCalendar, load_year_table

NOTICES = Path(__file__).parent / "notices"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    # No database: the import reads a file and writes a file.
    path = tmp_path / "config.toml"
    path.write_text('[database]\nurl = "sqlite+aiosqlite:///unused.db"\n', encoding="utf-8")
    return path


def run(config: Path, *args: str | Path) -> int:
    return main(["--config", str(config), "calendar", "import", *map(str, args)])


def notice_2026() -> str:
    return (NOTICES / "2026.txt").read_text(encoding="utf-8")


def days_of(year: int) -> list[date]:
    first = date(year, 1, 1)
    return [first + timedelta(days=i) for i in range((date(year + 1, 1, 1) - first).days)]


@pytest.mark.parametrize("year", [2025, 2026])
def test_the_notice_gives_exactly_the_packages_year(
    year: int, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tables"
    assert run(config, NOTICES / f"{year}.txt", "--out", out) == 0
    table = load_year_table(out / f"{year}.toml")
    first, last = date(year, 1, 1), date(year, 12, 31)
    # The package's own tables, and its public answers, for the whole year.
    assert table.holidays == {d for d in chinese_calendar.constants.holidays if d.year == year}
    assert table.workdays == {
        d for d in chinese_calendar.get_workdays(first, last, include_weekends=True)
        if d.weekday() >= 5
    }  # fmt: skip
    # (with include_weekends=False it lists the official days off, the weekend ones too)
    assert table.holidays == set(chinese_calendar.get_holidays(first, last, include_weekends=False))
    from_table = WorkdayCalendar({year: table}, use_package=False, use_statutory=False)
    for day in days_of(year):
        assert from_table.is_workday(day) == chinese_calendar.is_workday(day), day
    assert table.source == f"国务院办公厅关于{year}年部分节假日安排的通知"
    assert f"已写入 {out / f'{year}.toml'}" in capsys.readouterr().out


def test_it_prints_what_it_read(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, NOTICES / "2026.txt", "--out", tmp_path / "2026.toml") == 0
    assert capsys.readouterr().out.splitlines()[:-1] == [
        "国务院办公厅关于2026年部分节假日安排的通知",
        "元旦：1月1日（周四）至1月3日（周六）放假，共3天；1月4日（周日）上班",
        "春节：2月15日（周日）至2月23日（周一）放假，共9天；2月14日（周六）、2月28日（周六）上班",
        "清明节：4月4日（周六）至4月6日（周一）放假，共3天",
        "劳动节：5月1日（周五）至5月5日（周二）放假，共5天；5月9日（周六）上班",
        "端午节：6月19日（周五）至6月21日（周日）放假，共3天",
        "中秋节：9月25日（周五）至9月27日（周日）放假，共3天",
        "国庆节：10月1日（周四）至10月7日（周三）放假，共7天；9月20日（周日）、10月10日（周六）上班",
        "共放假33天，调休上班6天。",
    ]


def test_by_default_it_writes_where_the_calendar_reads(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, NOTICES / "2026.txt") == 0
    written = config.parent / "holidays" / "2026.toml"
    assert written.is_file()
    calendar = build_calendar(load_config(config))
    assert calendar.source(date(2026, 2, 16)) == "table"
    # Refused the second time, so nobody replaces a checked table by accident ...
    capsys.readouterr()
    assert run(config, NOTICES / "2026.txt") == 1
    assert f"{written} 已存在；确认要替换请加 --force" in capsys.readouterr().err
    # ... unless they say so.
    assert run(config, NOTICES / "2026.txt", "--force") == 0


def test_a_table_for_the_year_elsewhere_in_config_is_not_shadowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mine.toml").write_text(
        'year = 2026\nsource = "local"\nholidays = [2026-01-01]\n', "utf-8"
    )
    config = tmp_path / "config.toml"
    config.write_text('[calendar]\nholiday_tables = ["mine.toml"]\n', encoding="utf-8")
    assert run(config, NOTICES / "2026.txt") == 1
    assert "配置里已有2026年的节假日表" in capsys.readouterr().err
    assert not (tmp_path / "holidays").exists()


def test_the_year_from_the_title_or_from_year(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    untitled = tmp_path / "untitled.txt"
    untitled.write_text(notice_2026().replace("国务院办公厅关于2026年部分节假日安排的通知", ""))
    assert run(config, untitled, "--out", tmp_path) == 1
    assert "找不到通知标题" in capsys.readouterr().err
    assert run(config, untitled, "--year", "2026", "--out", tmp_path) == 0
    assert load_year_table(tmp_path / "2026.toml").year == 2026
    assert run(config, NOTICES / "2026.txt", "--year", "2027", "--out", tmp_path / "x") == 1
    assert "通知标题是2026年，--year 却是2027年" in capsys.readouterr().err


def test_the_document_number_goes_into_the_source() -> None:
    text = notice_2026().replace("各省、", "国办发明电〔2099〕99号（示例编号）\n各省、")
    assert parse_notice(text).source.endswith(" (国办发明电〔2099〕99号)")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        # A sentence the reader does not know.
        (
            "至23日（农历正月初七、周一）放假调休，共9天",
            "到23日休息",
            "第10行：读不懂“2月15日(农历腊月二十八、周日)到23日休息”",
        ),
        # A weekday that is not the date's (a wrong year, or a typo).
        (
            "2月15日（农历腊月二十八、周日）",
            "2月15日（周一）",
            "第10行：2026-02-15是周日，通知写的是周一",
        ),
        # A range that runs backwards over the year's end, without the years written.
        (
            "1月1日（周四）至3日（周六）",
            "12月31日（周四）至1月3日（周六）",
            "第9行：“12月31日(周四)至1月3日(周六)”的结束日期早于开始日期",
        ),
        # A range in a year far from the notice's.
        (
            "1月1日（周四）至3日（周六）",
            "2028年1月1日至3日",
            "第9行：“2028年1月1日”的年份2028年与通知的2026年不相邻",
        ),
        # A make-up working day that is not a weekend day.
        (
            "5月9日（周六）上班",
            "5月8日（周五）上班",
            "第12行：2026-05-08是周五，调休上班日只能是周六或周日",
        ),
        # The law's 除夕 (16 February) left out of the Spring Festival.
        (
            "2月15日（农历腊月二十八、周日）至23日（农历正月初七、周一）放假调休，共9天",
            "2月17日（周二）至23日（周一）放假调休，共7天",
            "第10行：“春节”的法定假日2026-02-16不在它的放假日期里",
        ),
        # 共N天 that is not the range's length.
        (
            "共9天",
            "共8天",
            "第10行：“2月15日(农历腊月二十八、周日)至23日(农历正月初七、周一)”共9天，通知却写“共8天”",
        ),
        # A festival the law does not have, one missing, one twice.
        ("三、清明节：", "三、清明：", "第11行：不认识的节日“清明”"),
        (
            "三、清明节：4月4日（周六）至6日（周一）放假，共3天。",
            "",
            "通知里缺少“清明节”的放假安排",
        ),
        ("六、中秋节：", "六、国庆节：", "第15行：“国庆节”在第14行已经安排过了"),
        # A day both off and working.
        ("5月9日（周六）上班", "5月2日（周六）上班", "第12行：2026-05-02已在第12行出现过"),
        ("2月28日（周六）上班", "30日（周六）上班", "第10行：“30日(周六)”不是有效的日期"),
    ],
)
def test_a_notice_it_cannot_trust_is_refused_naming_the_line(
    old: str,
    new: str,
    message: str,
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert old in notice_2026()
    path = tmp_path / "notice.txt"
    path.write_text(notice_2026().replace(old, new), encoding="utf-8")
    assert run(config, path, "--out", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mashangyi: {path}: ")
    assert message in err
    assert not (tmp_path / "out").exists()


def test_not_a_notice(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notice.txt"
    path.write_text("国务院办公厅关于2026年部分节假日安排的通知\n\n（正文缺失）\n", "utf-8")
    assert run(config, path) == 1
    assert "没有找到“一、元旦：……”这样的放假安排条目" in capsys.readouterr().err
    path.write_bytes(notice_2026().encode("gb18030"))
    assert run(config, path) == 1
    assert "不是 UTF-8 文本" in capsys.readouterr().err
    assert run(config, tmp_path / "missing.txt") == 1
    assert "读不了" in capsys.readouterr().err
    old = notice_2026().replace("2026年部分", "2024年部分")
    path.write_text(old, encoding="utf-8")
    assert run(config, path) == 1
    assert "只能导入2025年起的通知" in capsys.readouterr().err


def test_a_new_year_holiday_from_the_year_before() -> None:
    """Written with its years (as the 2023 notice did), the days in December are shown and
    left to that year's table. An invented 2027 notice: only the form is real."""
    lines = notice_2026().replace("2026年部分", "2027年部分").splitlines()
    items = [
        "一、元旦：2026年12月31日（周四）至2027年1月3日（周日）放假调休，共4天。",
        "二、春节：2月5日（农历除夕、周五）至11日（周四）放假调休，共7天。2月20日（周六）上班。",
        "三、清明节：4月5日（周一）放假，共1天。",
        "四、劳动节：5月1日（周六）至5日（周三）放假调休，共5天。",
        "五、端午节：6月9日（周三）放假，共1天。",
        "六、中秋节：9月15日（周三）放假，共1天。",
        "七、国庆节：10月1日（周五）至7日（周四）放假调休，共7天。",
    ]
    notice = parse_notice("\n".join([*lines[:8], *items]))
    assert notice.year == 2027
    new_year = notice.items[0]
    assert new_year.outside == (date(2026, 12, 31),)
    assert new_year.holidays == (date(2027, 1, 1), date(2027, 1, 2), date(2027, 1, 3))
    assert date(2026, 12, 31) not in notice.table().holidays
