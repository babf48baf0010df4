"""User-facing errors. The CLI turns every `HarnessError` into one message and exit status 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HarnessError(Exception):
    """Bad input from the user (spec, file, flag). The message says what and where."""


class SpecError(HarnessError, ValueError):
    """A spec field is wrong. `field` is the dotted path (``training.lr``)."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class DataError(HarnessError, OSError):
    """A dataset file is missing, truncated or malformed. The message names the file."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
