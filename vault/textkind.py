"""Is this data text? The one test the secret scanner and the indexer share."""

from __future__ import annotations

# C0 controls that text does not hold (tab, newlines, form feed and ESC it may), and DEL.
CONTROL_BYTES = bytes([*range(0, 9), *range(14, 27), *range(28, 32), 127])
HIGH_BYTES = bytes(range(128, 256))


def text_like(data: bytes) -> bool:
    """Text (UTF-8, Latin-1, with a stray NUL) rather than binary data such as a PNG or floats."""
    bad = len(data) - len(data.translate(None, CONTROL_BYTES))
    if bad * 50 > len(data):
        return False
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        pass
    high = len(data) - len(data.translate(None, HIGH_BYTES))
    return high * 4 <= len(data)  # 8-bit text is mostly ASCII; random bytes are half high
