"""The one kind of error a user can fix.

Every problem a user can cause (a bad recipe, bad data, a run directory that cannot be
used, a model that is not on this machine ...) is a `UserError` whose message says where,
what is wrong and how to fix it. It is caught once at the command-line edge
(`runner.cli`) and once in the training process (`runner.train`), printed as
`error: <message>` with exit code 1. Any other exception is a bug and keeps its
traceback.

The subclasses (RecipeError, DataError, RunDirError, AfterError, PlanError) only say
which stage found the problem; nothing catches them one by one.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the message says where, what, and how."""

    exit_code = 1  # what the command exits with (a stopped run uses its own)

    def report(self) -> list[str]:
        """The lines printed to stderr for this error."""
        return [f"error: {self}"]


class DataError(UserError):
    """A data problem a user can fix; the message says where (source and row or line),
    what, and how. Here, not with the reader, so that code turning rows into something
    else can say a row is wrong without importing the reader."""
