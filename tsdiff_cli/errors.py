"""The one exception type for mistakes a user can fix.

The CLI turns a :class:`UserError` into a single line on stderr and exit status 2; anything else
is a bug in tsdiff and keeps its traceback.
"""


class UserError(Exception):
    """Bad input: the message names the input, what is wrong with it, and what to do."""

    def __init__(self, where: str, problem: str, fix: str | None = None):
        self.where, self.problem, self.fix = str(where), problem, fix
        text = f"{self.where}: {problem}"
        if fix:
            text += f"; {fix}"
        super().__init__(text)


class Interrupted(Exception):
    """Ctrl-C or SIGTERM was handled (state saved); the CLI prints the message and exits with
    ``code`` (130 for Ctrl-C, 143 for SIGTERM, as shells report them)."""

    def __init__(self, message: str, code: int = 130):
        super().__init__(message)
        self.code = code
