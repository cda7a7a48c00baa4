"""JSON bodies under two bounds, checked before parsing: nesting (400) and, where a view sets one, size (413).

Its own module, below the API base classes: DRF reads ``DEFAULT_PARSER_CLASSES`` while it defines
``APIView``, so this module must not import DRF's views.
"""

from __future__ import annotations

import io
import re

import numpy as np
from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser

# Deeper JSON is refused before it is parsed: ``json`` recurses once per level, so a body of a few
# thousand "[" raised RecursionError (a 500). No document the API takes nests past a dozen levels.
JSON_MAX_DEPTH = 64

# A string runs to its closing quote, or to the end of the text (possessive: every match is linear and
# succeeds, so an unclosed quote cannot make the scan quadratic).
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_CHUNK = 1 << 20


def json_too_deep(text: str | bytes, *, limit: int = JSON_MAX_DEPTH) -> bool:
    """Whether the JSON ``text`` nests arrays and objects more than ``limit`` deep, found without parsing it.

    Strings go first (a bracket inside text is no nesting), then everything but brackets; the
    depth after each bracket is a running sum, taken a megabyte at a time. All of it runs in C,
    so a 10 MiB body costs tens of milliseconds and no recursion. Brackets that do not pair are
    not JSON: the parser says so itself.
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    brackets = _JSON_STRING.sub(b"", data).translate(_BRACKETS, _NOT_BRACKETS)
    depth = 0
    for start in range(0, len(brackets), _CHUNK):
        chunk = np.frombuffer(brackets, dtype=np.uint8, count=min(_CHUNK, len(brackets) - start), offset=start)
        levels = depth + np.cumsum(92 - chunk.astype(np.int32))  # "[" is byte 91 (+1), "]" is 93 (-1)
        if levels.max() > limit:
            return True
        depth = int(levels[-1])
    return False


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class BoundedJSONParser(JSONParser):
    """JSON bodies refused before parsing when deeper than ``JSON_MAX_DEPTH`` (400), or larger than
    ``max_bytes`` where a view sets a tighter limit (413); DRF has read the body already, and
    Django refuses one over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` as it does (413, ``exception_handler``)."""

    max_bytes: int | None = None
    too_large_detail: str | None = None

    def parse(self, stream, media_type=None, parser_context=None):
        body = stream.read()
        if self.max_bytes is not None and len(body) > self.max_bytes:
            raise PayloadTooLarge(self.too_large_detail or f"The body is larger than the {self.max_bytes} bytes this endpoint accepts.")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = body.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            raise exceptions.ParseError(f"The body is not valid {encoding} text.") from None
        if json_too_deep(text):
            raise exceptions.ParseError(f"JSON nested more than {JSON_MAX_DEPTH} levels deep is refused.")
        return super().parse(io.BytesIO(body), media_type, parser_context)
