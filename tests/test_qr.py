"""``mashangyi qr``: room codes (WeChat through the fake API, Telegram deep links), posters,
the batch PDF and codes.csv. QR images are decoded back with zxing-cpp."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image, PdfParser
from sqlmodel import select

from bot import poster
from bot.cli import CliError, main, run
from bot.poster import PAGE, FontError, find_font, packaged_font
from bot.qr import select_rooms
from storage.db import SessionFactory, transaction
from storage.models import Room
from tests.fakes.wechat_api import QRCODE_CREATE, FakeWeChatAPI
from tests.qr_decode import decode
from workflow.rooms import import_rooms, parse_rooms_csv

BOT = "mashangyi_test_bot"
ROOMS = """code,name,level,parent_code
HA,示范市协商议事室,city,
QJP,清江浦区协商议事室,district,HA
QJP-CX,长西街道协商议事室,street,QJP
QJP-CX-A,柳树湾社区协商议事室,community,QJP-CX
QJP-CX-B,运河村协商议事室,village,QJP-CX
QJP-CX-B-1,运河村第一网格议事点,sector,QJP-CX-B
QJP-GY,高新园区协商议事室,park,QJP
QJP-GY-E,园区企业协商议事室,enterprise,QJP-GY
QJP-S,区直属社区协商议事室,community,QJP
"""
NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
#: Everything under the street QJP-CX, the street first, depth first by code.
UNDER_CX = ["QJP-CX", "QJP-CX-A", "QJP-CX-B", "QJP-CX-B-1"]


def wechat_url(code: str) -> str:
    """What the fake WeChat API answers for scene r_<code>."""
    return f"http://weixin.qq.com/q/r_{code}"


def telegram_link(code: str) -> str:
    return f"https://t.me/{BOT}?start=r_{code}"


#: Where the configs below serve the public pages.
BASE = "https://mashangyi.test"


def page_url(code: str) -> str:
    """The room's public page (bot/web/public_pages.py), also on every poster."""
    return f"{BASE}/r/{code}"


def pdf_pages(path: Path) -> int:
    pdf = PdfParser.PdfParser(str(path))
    try:
        return len(pdf.pages)
    finally:
        pdf.close()


def write_config(path: Path, database_url: str, **sections: dict[str, str]) -> Path:
    lines = [f'[database]\nurl = "{database_url}"']
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f'{key} = "{value}"' for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def load_rooms(sessions: SessionFactory, text: str = ROOMS) -> None:
    async with transaction(sessions) as session:
        await import_rooms(session, parse_rooms_csv(text.encode()), NOW)


async def run_qr(config: Path, *args: str) -> None:
    assert await run(["--config", str(config), "qr", *args], env={}) == 0


#: A WeChat account needs the key that signs review links (bot/services.py).
SIGNING = {"secret_key": "test-secret-key-0123456789", "public_base_url": BASE}


def wechat_section(fake: FakeWeChatAPI) -> dict[str, str]:
    return {"app_id": fake.app_id, "app_secret": fake.app_secret, "api_base_url": fake.base_url}


@pytest.fixture
async def wechat() -> AsyncIterator[FakeWeChatAPI]:
    fake = FakeWeChatAPI()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def both(
    tmp_path: Path, database_url: str, sessions: SessionFactory, wechat: FakeWeChatAPI
) -> Path:
    """A config with WeChat (the fake) and Telegram, and the rooms loaded."""
    await load_rooms(sessions)
    return write_config(
        tmp_path / "config.toml",
        database_url,
        wechat=wechat_section(wechat),
        server=SIGNING,
        telegram={"bot_username": BOT},
    )


# -- a batch -----------------------------------------------------------------------------


async def test_a_batch_under_a_street_makes_one_poster_and_one_page_per_room(
    both: Path, tmp_path: Path, wechat: FakeWeChatAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    await run_qr(both, "--all-under", "QJP-CX", "--out", str(out))

    posters = sorted(p.name for p in out.glob("*-poster.png"))
    assert posters == sorted(f"room-{code}-poster.png" for code in UNDER_CX)
    assert pdf_pages(out / "posters.pdf") == len(UNDER_CX)
    assert not (out / "posters.pdf.part").exists()
    assert "4 poster(s)" in capsys.readouterr().out

    # One permanent string-scene code per room, in page order.
    created = [r.json for r in wechat.calls(QRCODE_CREATE)]
    assert [c["action_name"] for c in created] == ["QR_LIMIT_STR_SCENE"] * len(UNDER_CX)
    assert [c["action_info"]["scene"]["scene_str"] for c in created] == [
        f"r_{code}" for code in UNDER_CX
    ]
    assert all("expire_seconds" not in c for c in created)

    # The raw codes decode to WeChat's URL and to the deep link.
    for code in UNDER_CX:
        assert decode(out / f"room-{code}-wechat.png") == {wechat_url(code)}
        assert decode(out / f"room-{code}-telegram.png") == {telegram_link(code)}
        assert decode(out / f"room-{code}-page.png") == {page_url(code)}
    # The three codes on the poster are readable, and they are this room's.
    assert decode(out / "room-QJP-CX-A-poster.png") == {
        wechat_url("QJP-CX-A"),
        telegram_link("QJP-CX-A"),
        page_url("QJP-CX-A"),
    }

    with (out / "codes.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["room_code"] for r in rows] == UNDER_CX
    assert rows[1] == {
        "room_code": "QJP-CX-A",
        "name": "柳树湾社区协商议事室",
        "scene": "r_QJP-CX-A",
        "wechat_url": wechat_url("QJP-CX-A"),
        "telegram_link": telegram_link("QJP-CX-A"),
        "page_url": page_url("QJP-CX-A"),
    }


async def test_one_room_makes_one_poster_and_one_code(
    both: Path, tmp_path: Path, wechat: FakeWeChatAPI
) -> None:
    out = tmp_path / "one"
    await run_qr(both, "--room", "QJP-CX-B", "--out", str(out))
    assert [p.name for p in out.glob("*-poster.png")] == ["room-QJP-CX-B-poster.png"]
    assert pdf_pages(out / "posters.pdf") == 1
    scenes = [r.json["action_info"]["scene"]["scene_str"] for r in wechat.calls(QRCODE_CREATE)]
    assert scenes == ["r_QJP-CX-B"]


async def test_the_poster_is_an_a4_page_with_content(both: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    await run_qr(both, "--room", "QJP-CX-A", "--out", str(out))
    image = Image.open(out / "room-QJP-CX-A-poster.png")
    assert image.size == PAGE == (1654, 2339)
    assert image.info["dpi"] == pytest.approx((200, 200), abs=0.1)
    grey = image.convert("L")
    histogram = grey.histogram()
    dark = sum(histogram[:128]) / (PAGE[0] * PAGE[1])
    assert 0.1 < dark < 0.6, dark  # the red banner, the codes and the text
    assert image.convert("RGB").getpixel((5, 5)) == poster.RED
    # The room's name is drawn below the banner: that band is not empty.
    band = grey.crop((0, 420, PAGE[0], 560))
    assert band.getextrema()[0] < 100


# -- one channel missing, or a refusal -----------------------------------------------------


async def test_without_wechat_posters_carry_the_telegram_code_and_a_note(
    tmp_path: Path, database_url: str, sessions: SessionFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    await load_rooms(sessions)
    config = write_config(
        tmp_path / "c.toml",
        database_url,
        telegram={"bot_username": BOT},
        server={"public_base_url": BASE},
    )
    out = tmp_path / "out"
    await run_qr(config, "--all-under", "QJP-CX", "--out", str(out))

    said = capsys.readouterr().out
    assert "note: WeChat is not configured (wechat.app_id is empty)" in said
    assert "public_base_url" not in said  # a public address: no note about it
    assert list(out.glob("*-wechat.png")) == []
    assert len(list(out.glob("*-telegram.png"))) == len(UNDER_CX)
    assert pdf_pages(out / "posters.pdf") == len(UNDER_CX)
    assert decode(out / "room-QJP-CX-B-poster.png") == {
        telegram_link("QJP-CX-B"),
        page_url("QJP-CX-B"),
    }
    with (out / "codes.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["wechat_url"] for r in rows} == {""}


async def test_without_telegram_posters_carry_the_wechat_code_and_a_note(
    tmp_path: Path,
    database_url: str,
    sessions: SessionFactory,
    wechat: FakeWeChatAPI,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await load_rooms(sessions)
    config = write_config(
        tmp_path / "c.toml",
        database_url,
        wechat=wechat_section(wechat),
        server=SIGNING,
    )
    out = tmp_path / "out"
    await run_qr(config, "--room", "QJP-CX-A", "--out", str(out))
    assert "note: telegram.bot_username is empty" in capsys.readouterr().out
    assert list(out.glob("*-telegram.png")) == []
    assert decode(out / "room-QJP-CX-A-poster.png") == {
        wechat_url("QJP-CX-A"),
        page_url("QJP-CX-A"),
    }


async def test_a_wechat_refusal_stops_the_batch_before_anything_is_written(
    both: Path, tmp_path: Path, wechat: FakeWeChatAPI
) -> None:
    wechat.script(QRCODE_CREATE, errcode=45009, errmsg="reach max api daily quota limit")
    out = tmp_path / "out"
    with pytest.raises(
        CliError, match=r"WeChat could not make the code for scene 'r_QJP-CX'.*45009"
    ):
        await run_qr(both, "--all-under", "QJP-CX", "--out", str(out))
    assert not out.exists()


def test_an_unknown_room_exits_1_and_says_so(
    empty_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "c.toml", empty_db, telegram={"bot_username": BOT})
    out = tmp_path / "out"
    assert main(["--config", str(config), "qr", "--room", "NOWHERE", "--out", str(out)]) == 1
    assert "no room with code 'NOWHERE'" in capsys.readouterr().err
    assert not out.exists()


async def test_without_any_chat_platform_a_poster_still_leads_to_the_rooms_page(
    tmp_path: Path, database_url: str, sessions: SessionFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A poster printed where neither WeChat nor Telegram is configured (a village without
    either) carries the code of the room's public page, and says so."""
    await load_rooms(sessions)
    config = write_config(tmp_path / "c.toml", database_url, server={"public_base_url": BASE})
    out = tmp_path / "out"
    await run_qr(config, "--room", "QJP-CX", "--out", str(out))
    said = capsys.readouterr().out
    assert "the posters carry only the code of each room's public page" in said
    assert decode(out / "room-QJP-CX-poster.png") == {page_url("QJP-CX")}
    assert list(out.glob("*-wechat.png")) == list(out.glob("*-telegram.png")) == []


async def test_a_loopback_base_url_on_a_poster_gets_a_note(
    tmp_path: Path, database_url: str, sessions: SessionFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    await load_rooms(sessions)
    config = write_config(tmp_path / "c.toml", database_url, telegram={"bot_username": BOT})
    out = tmp_path / "out"
    await run_qr(config, "--room", "QJP-CX", "--out", str(out))
    assert "server.public_base_url is http://127.0.0.1:8080" in capsys.readouterr().out


async def test_a_room_code_unfit_for_a_payload_is_named(
    tmp_path: Path, database_url: str, sessions: SessionFactory
) -> None:
    await load_rooms(sessions, ROOMS)
    # Imports refuse such codes now; a room stored by an older version can still have one.
    async with transaction(sessions) as session:
        parent = (await session.exec(select(Room).where(Room.code == "QJP-CX"))).one()
        session.add(Room(code="QJP-CX-村", name="某村议事室", level="village", parent_id=parent.id))
    config = write_config(tmp_path / "c.toml", database_url, telegram={"bot_username": BOT})
    out = tmp_path / "out"
    with pytest.raises(CliError, match=r"cannot be put in a QR code.*'QJP-CX-村'"):
        await run_qr(config, "--all-under", "QJP-CX", "--out", str(out))
    assert not out.exists()


# -- the room's town ---------------------------------------------------------------------


def test_a_poster_names_the_nearest_town_street_or_park_else_the_parent() -> None:
    rooms = [
        Room(id=n, code=code, name=name, level=level, parent_id=parent)
        for n, code, name, level, parent in [
            (1, "HA", "示范市", "city", None),
            (2, "QJP", "清江浦区", "district", 1),
            (3, "CX", "长西街道", "street", 2),
            (4, "CX-B", "运河村", "village", 3),
            (5, "CX-B-1", "第一网格", "sector", 4),
            (6, "GY", "高新园区", "park", 2),
            (7, "GY-E", "园区企业", "enterprise", 6),
            (8, "S", "区直属社区", "community", 2),
        ]
    ]
    towns = {room.code: town for room, town in select_rooms(rooms, "HA", subtree=True)}
    assert towns == {
        "HA": "",
        "QJP": "示范市",
        "CX": "清江浦区",  # a street's own town would be itself: its parent is named
        "CX-B": "长西街道",
        "CX-B-1": "长西街道",  # two levels up
        "GY": "清江浦区",
        "GY-E": "高新园区",
        "S": "清江浦区",  # no town above: the parent
    }
    order = [room.code for room, _ in select_rooms(rooms, "QJP", subtree=True)]
    assert order == ["QJP", "CX", "CX-B", "CX-B-1", "GY", "GY-E", "S"]
    assert [room.code for room, _ in select_rooms(rooms, "CX", subtree=False)] == ["CX"]


# -- the font ----------------------------------------------------------------------------


def test_the_setup_installs_a_chinese_font_and_it_is_found() -> None:
    packaged = packaged_font()
    assert packaged is not None, "pylopdf-fonts-zh-cn (Noto Sans SC) is not installed"
    assert find_font(None, system=()).path == packaged


def test_a_configured_font_must_exist_and_have_chinese_glyphs(tmp_path: Path) -> None:
    with pytest.raises(FontError, match=r"poster\.font: no such file"):
        find_font(tmp_path / "missing.ttf")
    not_a_font = tmp_path / "notes.ttf"
    not_a_font.write_text("not a font", encoding="utf-8")
    with pytest.raises(FontError, match=r"poster\.font: .* is not a font with Chinese glyphs"):
        find_font(not_a_font)
    packaged = packaged_font()
    assert packaged is not None
    assert find_font(packaged).path == packaged


def test_a_font_without_chinese_glyphs_is_refused() -> None:
    latin = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # fonts-dejavu-core
    if not latin.is_file():
        pytest.skip("no DejaVu Sans on this machine")
    with pytest.raises(FontError, match=r"is not a font with Chinese glyphs"):
        find_font(latin)


def test_without_any_chinese_font_the_error_names_the_config_key(tmp_path: Path) -> None:
    with pytest.raises(FontError, match=r"no font with Chinese glyphs.*poster\.font"):
        find_font(None, system=[str(tmp_path / "none.ttc")], packaged=False)


async def test_a_missing_configured_font_fails_the_command_before_wechat_is_called(
    tmp_path: Path, database_url: str, sessions: SessionFactory, wechat: FakeWeChatAPI
) -> None:
    await load_rooms(sessions)
    config = write_config(
        tmp_path / "c.toml",
        database_url,
        wechat=wechat_section(wechat),
        server=SIGNING,
        telegram={"bot_username": BOT},
        poster={"font": "fonts/none.otf"},
    )
    with pytest.raises(CliError, match=r"poster\.font: no such file: .*fonts/none\.otf"):
        await run_qr(config, "--room", "QJP-CX", "--out", str(tmp_path / "out"))
    assert wechat.requests == []
