"""Printable notices (公示) for the notice board: ``mashangyi notice`` and the download links,
the PDF's text extracted and checked, the PNG's QR code decoded back to the topic's page."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image
from pypdf import PdfReader

from bot.cli import CliError, run
from bot.config import load_config
from bot.services import build_services
from bot.web import create_app
from storage.db import make_session_factory
from storage.models import Topic
from tests.qr_decode import decode
from tests.world import ROUTES, World, build_world
from workflow.clock import FixedClock
from workflow.lifecycle import State

BASE = "https://mashangyi.test"
TITLE = "小区雨天积水<script>alert(1)</script>"
BACKGROUND = "每逢下雨，3号楼前积水没过脚踝，老人出行困难。"


@pytest.fixture
async def world(engine, clock: FixedClock) -> World:
    return await build_world(make_session_factory(engine), clock)


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[server]\npublic_base_url = "{BASE}"\n[database]\nurl = "{database_url}"\n'
        f'[media]\ndir = "{tmp_path / "media"}"\n',
        "utf-8",
    )
    return path


async def publicized(world: World) -> Topic:
    topic = await world.open("V1", title=TITLE, background=BACKGROUND, contact_phone="13812345678")
    topic = await world.walk(topic, ROUTES[State.APPROVED])
    await world.apply(
        topic, "publish", world.person("V1", "convener"), suggestions_close="2026-03-12"
    )
    return await world.reload(topic)


def pdf_text(data: bytes) -> str:
    """The PDF's text, without the spaces the extraction puts between CJK glyphs."""
    return "".join(
        "".join(page.extract_text().split()) for page in PdfReader(io.BytesIO(data)).pages
    )


async def test_a_publicized_topics_notice_from_the_command_line(
    world: World, config: Path, tmp_path: Path
) -> None:
    topic = await publicized(world)
    out = tmp_path / "out"
    assert (
        await run(["--config", str(config), "notice", topic.number, "--out", str(out)], env={}) == 0
    )
    pdf = (out / f"{topic.number}-topic.pdf").read_bytes()
    text = pdf_text(pdf)
    assert "议题公示" in text
    assert "".join(TITLE.split()) in text  # markup is printed as the characters typed
    assert f"议题编号：{topic.number}" in text
    assert "协商议事室：一镇议事室·一村议事室" in text
    assert "公示日期：2026年3月2日" in text and "建议征集截止：2026年3月12日" in text
    assert BACKGROUND in text
    assert "13812345678" not in text and "1381234" not in text  # never the submitter's phone
    png = Image.open(out / f"{topic.number}-topic.png")
    assert png.size == (1654, 2339)  # A4 at 200 dpi
    assert decode(png) == {f"{BASE}/t/{topic.number}"}


async def test_the_results_notice_once_results_are_published(
    world: World, config: Path, tmp_path: Path
) -> None:
    topic = await publicized(world)
    steps = ROUTES[State.RESULTS_PUBLISHED]
    world.clock.advance(timedelta(days=8))
    topic = await world.walk(topic, steps[steps.index("publish") + 1 :])
    out = tmp_path / "out"
    args = ["--config", str(config), "notice", topic.number, "--out", str(out)]
    assert await run(args, env={}) == 0  # the results' by default, now
    text = pdf_text((out / f"{topic.number}-results.pdf").read_bytes())
    assert "协商结果公示" in text
    assert "落实单位：镇城管科" in text and "完成时限：2026年6月30日" in text
    assert "协商共识" in text and "建两座公厕" in text
    assert "落实措施" in text and "立项施工" in text
    assert "结果公示日期：2026年3月10日" in text
    assert await run([*args, "--kind", "topic"], env={}) == 0
    assert (out / f"{topic.number}-topic.pdf").is_file()


async def test_no_notice_before_publication(world: World, config: Path, tmp_path: Path) -> None:
    topic = await world.walk(await world.open("V1"), ROUTES[State.APPROVED])
    args = ["--config", str(config), "notice", topic.number, "--out", str(tmp_path)]
    with pytest.raises(CliError, match="has no public notice"):
        await run(args, env={})
    with pytest.raises(CliError, match="has no public notice"):
        await run([*args[:3], "NO-SUCH-1", *args[4:]], env={})
    published = await publicized(world)
    with pytest.raises(CliError, match="has no results notice"):
        await run([*args[:3], published.number, *args[4:], "--kind", "results"], env={})
    assert not any(tmp_path.glob("*.pdf"))  # noqa: ASYNC240 (a test's own folder)


async def test_the_notice_is_served_for_printing_from_the_topic_page(
    world: World, config: Path, clock: FixedClock
) -> None:
    topic = await publicized(world)
    hidden = await world.walk(await world.open("V1"), ROUTES[State.APPROVED])
    services = build_services(load_config(config, env={}), clock=clock)
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    await client.start_server()
    try:
        pdf = await client.get(f"/t/{topic.number}/notice.pdf")
        assert pdf.status == 200 and pdf.content_type == "application/pdf"
        assert "议题公示" in pdf_text(await pdf.read())
        png = await client.get(f"/t/{topic.number}/notice.png")
        assert png.status == 200 and png.content_type == "image/png"
        assert decode(Image.open(io.BytesIO(await png.read()))) == {f"{BASE}/t/{topic.number}"}
        for path in (
            f"/t/{hidden.number}/notice.pdf",  # not public yet
            f"/t/{topic.number}/notice.pdf?kind=results",  # no results yet
            f"/t/{topic.number}/notice.pdf?kind=other",
            "/t/NO-SUCH-1/notice.png",
        ):
            assert (await client.get(path)).status == 404, path
    finally:
        await client.close()
        await services.close()


async def test_a_long_background_is_cut_to_one_page_that_points_to_the_whole(
    world: World, config: Path, tmp_path: Path
) -> None:
    long = "每逢下雨，小区主干道和3号楼前积水没过脚踝，老人孩子出行困难，多次反映未解决。" * 40
    topic = await world.open("V1", title="积水" * 20, background=long)
    topic = await world.walk(topic, ROUTES[State.APPROVED])
    await world.apply(topic, "publish", world.person("V1", "convener"))
    args = ["--config", str(config), "notice", topic.number, "--out", str(tmp_path)]
    assert await run(args, env={}) == 0
    data = (tmp_path / f"{topic.number}-topic.pdf").read_bytes()
    assert len(PdfReader(io.BytesIO(data)).pages) == 1  # for the notice board: one sheet
    text = pdf_text(data)
    assert long[:100] in text and long not in text
    assert "…（全文请扫码查看）" in text
    png = Image.open(tmp_path / f"{topic.number}-topic.png")
    assert decode(png) == {f"{BASE}/t/{topic.number}"}  # nothing drawn over the code
