"""Badges at a door: the reader's polls turned into check-ins, one per presentation."""

import time

from micropython import const

_GONE_POLLS = const(3)  # polls without the badge before it counts as taken away (a reader misses some)
_RECENT = const(16)  # badges remembered for the re-tap delay


class Presentations:
    """One check-in per presentation of a badge.

    A badge held on the reader is one check-in, however long it stays. Taken away and presented
    again within `retap_ms` of its check-in, it is not a new one (a nervous double tap); after that
    delay, or another badge, it is. Badges are known by their token only: the UID is never kept.
    """

    def __init__(self, retap_ms, gone_polls=_GONE_POLLS):
        self.retap_ms = retap_ms
        self._gone_polls = gone_polls
        self._present = None  # the token of the badge on the reader
        self._missed = 0
        self._recent = []  # (token, ticks_ms of its check-in), oldest first

    def seen(self, token, now_ms=None):
        """A poll found the badge `token` on the reader: True if it is a new check-in."""
        now = time.ticks_ms() if now_ms is None else now_ms
        self._missed = 0
        if token == self._present:
            return False
        self._present = token
        for entry in self._recent:
            if entry[0] == token:
                if time.ticks_diff(now, entry[1]) < self.retap_ms:
                    return False
                self._recent.remove(entry)
                break
        if len(self._recent) >= _RECENT:
            self._recent.pop(0)
        self._recent.append((token, now))  # a tuple: half the heap of a 2-item list
        return True

    def empty(self):
        """A poll found no badge (not a reader error, which says nothing of the badge)."""
        if self._present is not None:
            self._missed += 1
            if self._missed >= self._gone_polls:
                self._present = None
