"""WeChat's XML, parsed strictly: xmltodict over an expat that refuses any DOCTYPE.

WeChat never sends a DOCTYPE; a DTD (internal or external) is where entity expansion and
external fetches come from, so the parser refuses the declaration itself, before any of it
is read. Text that merely contains ``<!DOCTYPE`` (in CDATA) is text, and passes.
"""

from __future__ import annotations

from typing import Any
from xml.parsers import expat

import xmltodict


class _NoDoctype:
    """The ``expat`` module xmltodict is given: its parsers refuse a DOCTYPE."""

    @staticmethod
    def ParserCreate(  # the name xmltodict calls
        encoding: str | None = None, namespace_separator: str | None = None
    ) -> expat.XMLParserType:
        parser = expat.ParserCreate(encoding, namespace_separator)
        parser.StartDoctypeDeclHandler = _refuse_doctype
        return parser


def _refuse_doctype(name: str, *_rest: object) -> None:
    raise ValueError(f"DOCTYPE {name!r} refused")


def parse_xml(xml: bytes | str) -> dict[str, Any]:
    """The children of ``<xml>``.

    ValueError for a DOCTYPE (hence for any entity) or an ``<xml>`` without children;
    ExpatError for what is not XML; KeyError when the root is not ``<xml>``.
    """
    root = xmltodict.parse(xml, expat=_NoDoctype)["xml"]
    if not isinstance(root, dict):
        raise ValueError("<xml> without children")
    return root
