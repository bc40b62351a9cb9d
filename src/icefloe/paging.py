"""Page tokens (pure): CML-style ``page_size``/``page_token`` paging over ordered lists.

A token is an opaque, URL-safe encoding of the offset of the next page; anything that does
not decode to an offset a list can have is refused naming the token.
"""

from __future__ import annotations

import base64

from icefloe.errors import InvalidInputError

MAX_PAGE_SIZE = 1000
MAX_OFFSET = 2**31 - 1


def check_page_size(page_size: int) -> int:
    """``page_size`` if it is 1 to :data:`MAX_PAGE_SIZE`, else 422."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInputError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got "
                                f"{page_size}")
    return page_size


def offset_of(page_token: str | None) -> int:
    """The offset a page token stands for (0 for none).

    Raises:
        InvalidInputError: Not a token this server made.
    """
    if not page_token:
        return 0
    try:
        offset = int(base64.urlsafe_b64decode(page_token.encode()).decode())
    except ValueError:
        offset = -1
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidInputError(f"invalid page_token {page_token[:100]!r}: use the "
                                "next_page_token of the previous page")
    return offset


def token_for(offset: int) -> str:
    """The token of the page that starts at ``offset``."""
    return base64.urlsafe_b64encode(str(offset).encode()).decode()
