"""The media store in an S3-compatible bucket (MinIO, Tencent COS, AWS S3…), for hosts that
share their files (``[media] backend = "s3"``); see ``bot/media_store.py``."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from bot.media_store import MediaMissing, MediaStoreError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client


class S3MediaStore:
    """Objects in one bucket of an S3-compatible service, under ``prefix``. One client for
    the process, opened on first use (aiobotocore: aiohttp underneath, as the rest of us)."""

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str = "",
        region: str = "us-east-1",
        prefix: str = "",
        access_key_id: str = "",
        secret_access_key: str = "",
        timeout_seconds: float = 10.0,
    ) -> None:
        self.bucket, self.prefix, self.endpoint_url = bucket, prefix, endpoint_url
        self._options = {
            "region_name": region,
            "endpoint_url": endpoint_url or None,
            "aws_access_key_id": access_key_id or None,
            "aws_secret_access_key": secret_access_key or None,
            "config": AioConfig(
                # Path-style works with every S3-compatible service (MinIO, COS, moto).
                s3={"addressing_style": "path"},
                connect_timeout=timeout_seconds,
                read_timeout=timeout_seconds,
                retries={"max_attempts": 2, "mode": "standard"},
            ),
        }
        self._stack = contextlib.AsyncExitStack()
        self._client: S3Client | None = None
        self._opening = asyncio.Lock()

    async def put(self, key: str, data: bytes, content_type: str = "") -> None:
        client = await self._open()
        try:
            await client.put_object(
                Bucket=self.bucket,
                Key=self.prefix + key,
                Body=data,
                ContentType=content_type or "application/octet-stream",
            )
        except (BotoCoreError, ClientError) as exc:
            raise MediaStoreError(f"S3 put {key}: {exc}") from exc

    async def get(self, key: str) -> bytes:
        client = await self._open()
        try:
            answer = await client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            async with answer["Body"] as body:
                return await body.read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise MediaMissing(key) from None
            raise MediaStoreError(f"S3 get {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise MediaStoreError(f"S3 get {key}: {exc}") from exc

    async def delete(self, key: str) -> None:
        client = await self._open()
        try:
            await client.delete_object(Bucket=self.bucket, Key=self.prefix + key)
        except (BotoCoreError, ClientError) as exc:
            raise MediaStoreError(f"S3 delete {key}: {exc}") from exc

    def describe(self) -> str:
        where = self.endpoint_url or "AWS S3"
        return f"s3://{self.bucket}/{self.prefix} at {where}"

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    async def _open(self) -> S3Client:
        async with self._opening:
            if self._client is not None:
                return self._client
            opening = get_session().create_client("s3", **self._options)  # type: ignore[call-overload]
            client: S3Client = await self._stack.enter_async_context(opening)
            self._client = client
            return client
