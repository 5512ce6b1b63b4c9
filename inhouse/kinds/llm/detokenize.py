"""Token ids to text, incrementally, with stop strings.

A token is often part of a character (a multi-byte UTF-8 sequence split over byte-level BPE
tokens) or changes how the previous ones decode (SentencePiece's leading spaces), so each new
token's text is the difference of two decodes of a short window, held back while it ends in
an unfinished character. Text that could be the start of a stop string is held back too, until
it is clear; a stop string found ends the answer before it (OpenAI's ``stop``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

REPLACEMENT = "\ufffd"  # what a decode of an unfinished UTF-8 sequence ends with


class Detokenizer:
    """Turns the generated ids, one at a time, into the text to send.

    ``tokenizer`` is a Hugging Face tokenizer (``decode``); ``stop`` the stop strings.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str] = ()) -> None:
        self._tokenizer = tokenizer
        self._stop = tuple(s for s in stop if s)
        self._ids: list[int] = []
        self._prefix = 0  # window start: the ids before it are fully turned into text
        self._read = 0  # the ids before it have had their text sent (or held)
        self._held = ""  # text decoded but not sent: it may begin a stop string
        self.stopped = False

    def push(self, token_id: int) -> str:
        """The text that can be sent now that ``token_id`` was generated ("" if none)."""
        if self.stopped:
            return ""
        self._ids.append(int(token_id))
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) <= len(before) or after.endswith(REPLACEMENT):
            return ""  # an unfinished character: wait for the next token
        self._prefix, self._read = self._read, len(self._ids)
        return self._release(after[len(before) :])

    def flush(self) -> str:
        """The text still held when generation ends (no stop string completed)."""
        if self.stopped:
            return ""
        rest = self._decode(self._ids[self._prefix :])
        before = self._decode(self._ids[self._prefix : self._read])
        tail = rest[len(before) :] if rest.startswith(before) else ""
        text, self._held = self._held + tail.rstrip(REPLACEMENT), ""
        self._prefix = self._read = len(self._ids)
        return text

    def _decode(self, ids: list[int]) -> str:
        if not ids:
            return ""
        text: str = self._tokenizer.decode(ids, skip_special_tokens=True)
        return text

    def _release(self, new: str) -> str:
        text = self._held + new
        if not self._stop:
            self._held = ""
            return text
        found = [i for i in (text.find(s) for s in self._stop) if i >= 0]
        if found:
            self.stopped = True
            self._held = ""
            return text[: min(found)]
        keep = _partial_stop(text, self._stop)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]


def _partial_stop(text: str, stops: tuple[str, ...]) -> int:
    """The length of the longest end of ``text`` that begins a stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest
