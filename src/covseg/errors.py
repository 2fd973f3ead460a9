"""Errors that reach the user as one line: what is wrong and what to do."""
from __future__ import annotations


class CovsegError(Exception):
    """Base of every error covseg reports to a user without a traceback."""

    exit_code = 2


class InputError(CovsegError):
    """The input cannot be read or is not what it claims to be."""


class OutputExistsError(CovsegError):
    """An output would replace a file the user already has."""


class OutputError(CovsegError):
    """An output cannot be written: not a folder, not writable, the disk is full, or locked."""
