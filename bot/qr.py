"""``mashangyi qr``: a room's codes and its printable poster.

For each room (one, or a whole subtree): the WeChat permanent parametric QR code
(``qrcode/create`` with ``QR_LIMIT_STR_SCENE`` and scene ``r_<CODE>``; we encode the
returned ``url`` ourselves and never download WeChat's picture), the Telegram deep link
``https://t.me/<bot>?start=r_<CODE>``, the room's public page ``<public_base_url>/r/<CODE>``
(so that a poster leads somewhere also where no chat platform is configured), a poster PNG,
one PDF with every poster as a page and ``codes.csv``. A channel that is not configured is
left out with a note.

Every WeChat call is made before anything is written, so a refusal leaves no half batch.
"""

from __future__ import annotations

import asyncio
import csv
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from telegram.helpers import create_deep_linked_url

from bot.poster import (
    DPI,
    FontError,
    PosterContent,
    PosterFont,
    find_font,
    page_code,
    render_poster,
    telegram_code,
    wechat_code,
)
from bot.services import Services
from bot.wechat.client import WeChatAPI, WeChatError
from dialogs.types import room_payload
from notices.drawing import qr_image
from storage.models import Room
from workflow.queries import all_rooms

#: What both platforms accept as a scene / start payload.
PAYLOAD = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: A poster names the room's town: its nearest ancestor of these levels, else its parent.
TOWN_LEVELS = frozenset({"town", "street", "park"})
#: Width of the stand-alone code images (whole modules, so a little less).
RAW_SIZE = 800
PDF_NAME = "posters.pdf"
CSV_NAME = "codes.csv"
CSV_HEADER = ("room_code", "name", "scene", "wechat_url", "telegram_link", "page_url")
#: Where a printed page code would lead nowhere off this machine.
LOOPBACK = re.compile(r"https?://(127\.|localhost\b|\[::1\])")


class QRError(Exception):
    """A problem to report in one line; nothing was written."""


@dataclass(frozen=True)
class RoomCodes:
    code: str
    name: str
    town: str  # "" for a room without a parent
    scene: str
    wechat_url: str = ""  # "" when WeChat is not configured
    telegram_link: str = ""  # "" when telegram.bot_username is empty
    page_url: str = ""  # the room's public page

    def poster(self) -> PosterContent:
        codes = []
        if self.wechat_url:
            codes.append(wechat_code(self.wechat_url))
        if self.telegram_link:
            codes.append(telegram_code(self.telegram_link))
        if self.page_url:
            codes.append(page_code(self.page_url))
        return PosterContent(self.code, self.name, self.town, tuple(codes))


def select_rooms(rooms: list[Room], code: str, subtree: bool) -> list[tuple[Room, str]]:
    """The room ``code`` (and, with ``subtree``, every room below it, depth first, by code)
    with the name of each one's town."""
    by_code = {room.code: room for room in rooms}
    by_id = {room.id: room for room in rooms}
    root = by_code.get(code)
    if root is None:
        raise QRError(f"no room with code {code!r} (see `mashangyi rooms list`)")
    children: dict[int | None, list[Room]] = {}
    for room in sorted(rooms, key=lambda r: r.code):
        children.setdefault(room.parent_id, []).append(room)

    chosen: list[Room] = []
    stack = [root]
    seen: set[int | None] = set()
    while stack:
        room = stack.pop()
        if room.id in seen:
            continue
        seen.add(room.id)
        chosen.append(room)
        if subtree:
            stack.extend(reversed(children.get(room.id, [])))

    def town(room: Room) -> str:
        parent = by_id.get(room.parent_id)
        ancestor, hops = parent, 0
        while ancestor is not None and hops < len(rooms):
            if ancestor.level in TOWN_LEVELS:
                return ancestor.name
            ancestor, hops = by_id.get(ancestor.parent_id), hops + 1
        return parent.name if parent else ""

    return [(room, town(room)) for room in chosen]


def telegram_link(bot_username: str, scene: str) -> str:
    try:
        return create_deep_linked_url(bot_username.removeprefix("@"), scene)
    except ValueError as exc:
        raise QRError(f"telegram.bot_username / room payload {scene!r}: {exc}") from None


async def wechat_urls(services: Services, scenes: list[str]) -> dict[str, str]:
    """scene → the URL of its permanent parametric QR code, one ``qrcode/create`` each."""
    api = WeChatAPI.from_config(services.config.wechat, services.clock)
    urls: dict[str, str] = {}
    try:
        for scene in scenes:
            try:
                urls[scene] = (await api.create_qrcode(scene)).url
            except WeChatError as exc:
                raise QRError(
                    f"WeChat could not make the code for scene {scene!r}: {exc}; "
                    "nothing was written"
                ) from None
    finally:
        await api.close()
    return urls


async def make_posters(
    services: Services,
    code: str,
    *,
    subtree: bool,
    out: Path,
    say: Callable[[str], object] = print,
) -> list[RoomCodes]:
    """Codes, posters, PDF and CSV for room ``code`` (or its subtree) in ``out``."""
    config = services.config
    font_setting = config.poster.font
    try:
        font = find_font(config.base_dir / font_setting if font_setting else None)
    except FontError as exc:
        raise QRError(str(exc)) from None

    async with services.sessions() as session:
        rooms = list(await all_rooms(session))
    chosen = select_rooms(rooms, code, subtree)
    bad = [room.code for room, _ in chosen if not PAYLOAD.fullmatch(room_payload(room.code))]
    if bad:
        raise QRError(
            "these room codes cannot be put in a QR code (only A-Z, a-z, 0-9, _ and -): "
            + ", ".join(repr(c) for c in bad)
        )

    with_wechat = bool(config.wechat.app_id)
    bot_username = config.telegram.bot_username
    base_url = config.server.public_base_url.rstrip("/")
    if not with_wechat and not bot_username:
        say("note: neither WeChat (wechat.app_id) nor Telegram (telegram.bot_username) is "
            "configured: the posters carry only the code of each room's public page")  # fmt: skip
    if LOOPBACK.match(base_url):
        say(f"note: server.public_base_url is {base_url}: the page code on the posters leads "
            "nowhere off this machine; set it to the service's public address")  # fmt: skip
    if not with_wechat:
        say("note: WeChat is not configured (wechat.app_id is empty): no WeChat codes, the "
            "posters carry the Telegram code only")  # fmt: skip
    if not bot_username:
        say("note: telegram.bot_username is empty: no Telegram codes, the posters carry the "
            "WeChat code only")  # fmt: skip

    scenes = [room_payload(room.code) for room, _ in chosen]
    links = {scene: telegram_link(bot_username, scene) for scene in scenes} if bot_username else {}
    urls = await wechat_urls(services, scenes) if with_wechat else {}
    batch = [
        RoomCodes(
            code=room.code,
            name=room.name,
            town=town,
            scene=scene,
            wechat_url=urls.get(scene, ""),
            telegram_link=links.get(scene, ""),
            page_url=f"{base_url}/r/{room.code}",
        )
        for (room, town), scene in zip(chosen, scenes, strict=True)
    ]
    await asyncio.to_thread(write_batch, batch, font, out)
    say(
        f"{out}: {len(batch)} poster(s), {PDF_NAME} with {len(batch)} page(s), {CSV_NAME}"
        f" (WeChat codes: {'yes' if with_wechat else 'no'}, "
        f"Telegram codes: {'yes' if bot_username else 'no'})"
    )
    return batch


def write_batch(batch: list[RoomCodes], font: PosterFont, out: Path) -> None:
    """Code PNGs, poster PNGs, the PDF and the CSV. Posters are rendered one at a time and
    appended to the PDF, so a city's worth of pages never sits in memory at once."""
    out.mkdir(parents=True, exist_ok=True)
    pdf = out / (PDF_NAME + ".part")
    for n, room in enumerate(batch):
        if room.wechat_url:
            qr_image(room.wechat_url, RAW_SIZE).save(out / f"room-{room.code}-wechat.png")
        if room.telegram_link:
            qr_image(room.telegram_link, RAW_SIZE).save(out / f"room-{room.code}-telegram.png")
        if room.page_url:
            qr_image(room.page_url, RAW_SIZE).save(out / f"room-{room.code}-page.png")
        poster = render_poster(room.poster(), font)
        poster.save(out / f"room-{room.code}-poster.png", dpi=(DPI, DPI))
        # JPEG pages at high quality without chroma subsampling: the codes stay crisp.
        poster.save(
            pdf, "PDF", append=n > 0, resolution=DPI, quality=95, subsampling=0, title="码上议"
        )
    pdf.replace(out / PDF_NAME)
    # UTF-8 with a BOM, so that Excel shows the Chinese names.
    with (out / CSV_NAME).open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADER)
        for room in batch:
            writer.writerow(
                (room.code, room.name, room.scene, room.wechat_url, room.telegram_link,
                 room.page_url)
            )  # fmt: skip
