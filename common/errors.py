"""The one exception type that reaches the user as a single clear line."""


class UserError(Exception):
    """Bad input or a missing prerequisite: the message says what to do.

    The CLI prints it as one line (`error: ...`) and exits with status 2;
    it never shows a traceback.
    """
