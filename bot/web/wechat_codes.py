"""A temporary WeChat QR code as a PNG for a page (a topic's, a meeting's): WeChat makes
the code (``QR_STR_SCENE``), we draw its URL; a refusal is a 503 the page can live with."""

from __future__ import annotations

import io

from aiohttp import web

from bot.services import Services
from bot.wechat.client import WeChatAPI, WeChatError
from notices.drawing import qr_image

SIZE = 480


async def temporary_code(services: Services, scene: str, seconds: int) -> bytes:
    api = WeChatAPI.from_config(services.config.wechat, services.clock)
    try:
        made = await api.create_qrcode(scene, seconds)
    except WeChatError:
        raise web.HTTPServiceUnavailable(text="暂时无法生成二维码，请稍后再试。") from None
    finally:
        await api.close()
    buffer = io.BytesIO()
    qr_image(made.url, SIZE).save(buffer, "PNG")
    return buffer.getvalue()
