"""The small error tree every layer raises; the CLI turns UserError into one line."""

from __future__ import annotations


class HopbenchError(Exception):
    """Base of every error hopbench raises on purpose."""


class UserError(HopbenchError):
    """Bad input or an unmet prerequisite: printed as one line, exit code 2."""

    exit_code = 2


class PrerequisiteError(UserError):
    """A tool, package, kernel feature or privilege is missing."""


class ClusterError(HopbenchError):
    """The cluster did not come up, or stopped answering (exit code 3)."""

    exit_code = 3


class BuildError(HopbenchError):
    """The Go build of upstream binaries failed (exit code 4)."""

    exit_code = 4
