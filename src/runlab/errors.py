"""The one base class of the mistakes a user can fix: :class:`UserError`.

Every error runlab raises for a mistake of the user's (a bad override, a
missing logs directory, a damaged record, a query that does not parse) is a
``UserError``: it says what was wrong, where, and what to do, in one line. The
command line catches it once (``runlab.cli.main``) and prints
``runlab <command>: error: <line>`` with exit status 2; ``RUNLAB_DEBUG=1`` adds
the traceback. Anything else is runlab's own fault and is printed as an
internal error.

This module imports nothing of runlab's, so every layer may raise its errors.
"""

from __future__ import annotations

from os import PathLike


class UserError(Exception):
    """A mistake of the user's, said in one line: what, where, and what to do.

    ``UserError("no sweep in logs")`` keeps a ready line;
    ``UserError("no sweep", where=logs, todo="submit one with `runlab submit`")``
    composes ``no sweep: logs (submit one with `runlab submit`)``. ``code`` is the
    command's exit status (2: the user's mistake; 1: a failure the user must look at,
    such as a run that failed).
    """

    code: int = 2
    detail: str = ""  # lines shown under the one line, as they are (a query with a caret)

    def __init__(
        self,
        what: str,
        *,
        where: str | PathLike[str] | None = None,
        todo: str | None = None,
        code: int | None = None,
    ) -> None:
        self.what = str(what)
        self.where = None if where is None else str(where)
        self.todo = todo
        if code is not None:
            self.code = code
        super().__init__(self.line())

    def line(self) -> str:
        """The message as one line: ``what: where (todo)``."""
        text = self.what if self.where is None else f"{self.what}: {self.where}"
        if self.todo:
            text += f" ({self.todo})"
        return one_line(text)

    def __reduce__(self):  # picklable across submitit and multiprocessing
        return (_rebuild, (type(self), self.what, self.where, self.todo, self.code))


def _rebuild(cls: type[UserError], what: str, where: str | None, todo: str | None, code: int):
    err = cls.__new__(cls)
    UserError.__init__(err, what, where=where, todo=todo, code=code)
    return err


def one_line(text: str) -> str:
    """A (possibly multi-line) message as one line: Hydra's config search path left out,
    the indented items of a list joined with commas."""
    out = ""
    item = False  # the last piece was an indented list item
    for raw in str(text).splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("Config search path"):
            break
        indented = raw[:1].isspace()
        if not out:
            out = line
        elif indented and item:
            out += ", " + line
        elif out.endswith((".", ":", ";", "!", "?", ",")):
            out += " " + line
        else:
            out += "; " + line
        item = indented
    return " ".join(out.split())
