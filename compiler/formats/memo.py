"""Texts written from plain data, kept by the data's content: the same documents and blocks recur in every region
(issue #16), so each distinct one is written once per process."""

from __future__ import annotations

import hashlib
import marshal
from typing import Callable


class TextMemo:
    """make()'s text for `data`, kept under the SHA-256 of data's marshal form (types, values and dict order:
    everything a writer of plain data reads). The digest, not the marshal bytes, is kept (at 120 regions those keys
    alone were ~5 MB). Bounded: full at `limit` entries, it starts over, so a long-lived process does not grow it
    without limit."""

    __slots__ = ("_texts", "_limit")

    def __init__(self, limit: int):
        self._texts: dict[bytes, str] = {}
        self._limit = limit

    @staticmethod
    def key(data) -> bytes:
        """The data's digest; ValueError for a value marshal cannot write (an object of a class)."""
        return hashlib.sha256(marshal.dumps(data)).digest()

    def text(self, key: bytes, make: Callable[[], str]) -> str:
        text = self._texts.get(key)
        if text is None:
            if len(self._texts) >= self._limit:
                self._texts.clear()
            text = self._texts[key] = make()
        return text

    def clear(self) -> None:
        self._texts.clear()

    def __len__(self) -> int:
        return len(self._texts)
