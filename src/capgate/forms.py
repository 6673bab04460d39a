"""HTML form bodies (urlencoded and multipart/form-data), read in bounded, linear time.

The body of a request on the legacy API is read on the event loop before the key is
checked, so reading it must cost little whatever it holds: every step here is a C-level
scan (`bytes.find`, `split`, `translate`, `binascii`), the number of fields and of part
header bytes is capped, and a form field is flat: a nested multipart part is refused,
never walked. The worst megabyte found takes about 8 ms (measured in
tests/unit/test_dialect_twocaptcha_legacy.py).
"""

from __future__ import annotations

import binascii
import re

import msgspec

# More fields than a legacy request ever has (2captcha-python sends about 15).
MAX_FIELDS = 64
# One part's header block: Content-Disposition and Content-Type fit many times over.
MAX_PART_HEADER_BYTES = 1024
MAX_PART_HEADER_LINES = 8
# '%' signs that start no %XX escape, per field: each costs a Python step to keep.
MAX_LONE_PERCENTS = 64
# Text charsets a part may name; Python's codec registry also holds codecs that are not
# charsets at all (rot13, zlib, idna, which refuses "replace"), so it is not asked.
CHARSETS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "us-ascii": "ascii",
    "ascii": "ascii",
    "iso-8859-1": "latin-1",
    "iso_8859-1": "latin-1",
    "latin-1": "latin-1",
    "latin1": "latin-1",
    "windows-1252": "cp1252",
    "cp1252": "cp1252",
}


class FormError(ValueError):
    """The body is not a form this module will read; the message says why."""


class Part(msgspec.Struct, frozen=True):
    """One multipart/form-data field: its name, filename (uploads), charset and bytes."""

    name: str
    filename: str | None
    charset: str
    data: bytes


# --- application/x-www-form-urlencoded -------------------------------------------------

# Every byte as '%' (itself), 'h' (a hex digit) or '.', so escapes can be found by
# bytes.replace: "%hh" marks exactly the escapes.
_ESCAPE_MARKS = bytes(
    ord("%") if c == ord("%") else ord("h") if chr(c) in "0123456789abcdefABCDEF" else ord(".")
    for c in range(256)
)


def urlencoded(body: bytes, max_fields: int = MAX_FIELDS) -> list[tuple[str, str]]:
    """The name/value pairs of a query string or urlencoded body, as `parse_qsl` with
    `keep_blank_values` reads them (UTF-8, invalid bytes replaced), at most `max_fields`."""
    # Counted as urllib counts them (separators + 1), before anything is split.
    if body.count(b"&") >= max_fields:
        raise FormError(f"The form has more than {max_fields} fields")
    pairs = []
    for field in body.split(b"&"):
        if field:
            name, _, value = field.partition(b"=")
            pairs.append((_unquote_plus(name), _unquote_plus(value)))
    return pairs


def unquote_plus(raw: bytes) -> bytes:
    """Percent-escapes and '+' decoded; a '%' that starts no escape stays as it is.

    urllib's unquote costs a Python step per escape (150 ms for a megabyte of them):
    here the escapes become quoted-printable ones, which binascii decodes in C.
    """
    raw = raw.replace(b"+", b" ")
    if b"%" not in raw:
        return raw
    # Escapes marked "=hh": every '%' left in `marked` starts none.
    marked = raw.translate(_ESCAPE_MARKS).replace(b"%hh", b"=hh")
    if b"%" in marked:
        raw = _escape_lone_percents(raw, marked)
    # '=' is quoted-printable's escape: a literal one becomes "=3D" first.
    return binascii.a2b_qp(raw.replace(b"=", b"=3D").replace(b"%", b"="))


def _escape_lone_percents(raw: bytes, marked: bytes) -> bytes:
    """`raw` with each '%' that starts no escape written as "%25" (as urllib keeps it)."""
    pieces, start = [], 0
    for _ in range(MAX_LONE_PERCENTS + 1):
        at = marked.find(b"%", start)
        if at < 0:
            pieces.append(raw[start:])
            return b"%25".join(pieces)
        pieces.append(raw[start:at])
        start = at + 1
    raise FormError(f"A form field has more than {MAX_LONE_PERCENTS} '%' that start no %XX")


def _unquote_plus(raw: bytes) -> str:
    return unquote_plus(raw).decode("utf-8", "replace")


# --- multipart/form-data ---------------------------------------------------------------

# One `; name=value` parameter of a header, the value a quoted string (the loop unrolled,
# so it runs without backtracking) or a token.
_PARAMETER = re.compile(
    r'[ \t]*;[ \t]*([^ \t=;"]+)[ \t]*=[ \t]*'
    r'(?:"([^"\\]*(?:\\.[^"\\]*)*)"|([^; \t"]*))[ \t]*',
    re.DOTALL,
)


def multipart(content_type: bytes, body: bytes, max_parts: int = MAX_FIELDS) -> list[Part]:
    """The parts of a multipart/form-data body, in order (RFC 7578; line ends CRLF or LF).

    Parts without a name are skipped. A body with more than `max_parts` parts, a part
    whose headers pass MAX_PART_HEADER_BYTES, a nested multipart part, an unknown
    charset or a missing closing boundary is refused with FormError.
    """
    _, parameters = header_parameters(content_type.decode("latin-1"))
    boundary = parameters.get("boundary", "")
    if not 0 < len(boundary) <= 70 or not boundary.isascii() or not boundary.isprintable():
        raise FormError("The multipart Content-Type has no usable boundary")
    delimiter = b"--" + boundary.encode("ascii")
    # The first delimiter opens the body or a line after a preamble; later ones follow
    # a line end, which belongs to the delimiter, not to the part before it.
    line_delimiter = b"\n" + delimiter
    if body.startswith(delimiter):
        at = len(delimiter)
    else:
        found = body.find(line_delimiter)
        if found < 0:
            raise FormError("The multipart body holds no boundary line")
        at = found + len(line_delimiter)
    parts: list[Part] = []
    for _ in range(max_parts + 1):
        if body.startswith(b"--", at):
            return parts  # The closing delimiter: what follows is an epilogue.
        line_end = body.find(b"\n", at, at + 80)
        if line_end < 0 or body[at:line_end].strip(b" \t\r"):
            raise FormError("The multipart body has a malformed boundary line")
        head, data_start = _part_head(body, line_end + 1)
        # Empty content may go without its own line end: search from the blank line's LF.
        end = _next_delimiter(body, data_start - 1, line_delimiter)
        if end < 0:
            raise FormError("The multipart body ends before its closing boundary")
        if head is not None:
            data = body[data_start:end] if end > data_start else b""
            parts.append(Part(*head, data.removesuffix(b"\r")))
        at = end + len(line_delimiter)
    # Unnamed parts count too: each costs a turn of this loop.
    raise FormError(f"The multipart body has more than {max_parts} parts")


def _next_delimiter(body: bytes, start: int, line_delimiter: bytes) -> int:
    """Where the next delimiter line starts (its LF), or -1 if none does.

    A sender picks a boundary that its content lacks (RFC 2046 5.1.1), so the boundary
    at the start of a line that goes on with other text is refused, not skipped: skipping
    each of a megabyte of near misses would cost a Python step apiece.
    """
    found = body.find(line_delimiter, start)
    if found < 0:
        return -1
    after = body[found + len(line_delimiter) : found + len(line_delimiter) + 2]
    if after in (b"", b"--") or after[:1] in (b" ", b"\t", b"\r", b"\n"):
        return found
    raise FormError("The multipart boundary appears inside a part")


def _part_head(body: bytes, start: int) -> tuple[tuple[str, str | None, str] | None, int]:
    """A part's name, filename and charset from its headers, and where its content
    starts; None for a part without a name."""
    limit = start + MAX_PART_HEADER_BYTES
    disposition = content_type = ""
    at, lines = start, 0
    while True:
        line_end = body.find(b"\n", at, limit)
        if line_end < 0:
            raise FormError(
                f"A multipart part's headers are longer than {MAX_PART_HEADER_BYTES} bytes"
                " or never end"
            )
        line = body[at:line_end].removesuffix(b"\r")
        at = line_end + 1
        if not line:
            break
        lines += 1
        if lines > MAX_PART_HEADER_LINES:
            raise FormError(f"A multipart part has more than {MAX_PART_HEADER_LINES} headers")
        header, colon, value = line.partition(b":")
        if not colon:
            raise FormError("A multipart part has a header line without a colon")
        header = header.strip().lower()
        if header == b"content-disposition":
            disposition = value.decode("utf-8", "replace")
        elif header == b"content-type":
            content_type = value.decode("latin-1")
    kind, type_parameters = header_parameters(content_type)
    if kind.startswith("multipart/"):
        raise FormError("A nested multipart part is not a form field")
    charset_name = type_parameters.get("charset", "utf-8").lower()
    charset = CHARSETS.get(charset_name)
    if charset is None:
        raise FormError(f"The charset {charset_name[:40]!r} is not supported")
    _, parameters = header_parameters(disposition)
    name = parameters.get("name", "")
    if not name:
        return None, at
    filename = parameters.get("filename", parameters.get("filename*"))
    return (name, filename, charset), at


def header_parameters(value: str) -> tuple[str, dict[str, str]]:
    """A header value's first word (lower case) and its parameters (names lower case,
    the first of each kept); junk between parameters is skipped."""
    kind, semicolon, _ = value.partition(";")
    parameters: dict[str, str] = {}
    at = len(kind)
    while semicolon and at < len(value):
        match = _PARAMETER.match(value, at)
        if match is None:
            # Not a parameter: skip to the next ';' (each step moves forward).
            following = value.find(";", at + 1)
            at = len(value) if following < 0 else following
            continue
        name = match[1].lower()
        quoted, token = match[2], match[3]
        text = _unquote(quoted) if quoted is not None else token or ""
        parameters.setdefault(name, text)
        at = match.end()
    return kind.strip().lower(), parameters


def _unquote(quoted: str) -> str:
    """A quoted string's content: `\\x` stands for `x` (split, so it is C-level work)."""
    if "\\" not in quoted:
        return quoted
    return "\\".join(piece.replace("\\", "") for piece in quoted.split("\\\\"))
