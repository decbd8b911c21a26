"""One constant-time comparison for every signature and secret the service checks."""

from __future__ import annotations

import hmac


def same_secret(expected: str | bytes, given: str | bytes) -> bool:
    """Whether ``given`` equals ``expected``, in time independent of where they differ.

    Both are compared as UTF-8 bytes: ``hmac.compare_digest`` raises TypeError on a ``str``
    with non-ASCII characters, which a forged query or header may well carry.
    """
    return hmac.compare_digest(_utf8(expected), _utf8(given))


def _utf8(value: str | bytes) -> bytes:
    # surrogateescape: aiohttp hands undecodable query bytes over as lone surrogates.
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
