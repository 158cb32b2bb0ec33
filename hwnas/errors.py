"""The one error type that means "the user gave us something wrong"."""


class UserError(Exception):
    """Bad input: a message that says what is wrong and how to fix it.

    The CLI prints the message as one line and exits with code 2; the Python API lets it
    propagate. Anything else that escapes is a bug and keeps its traceback.
    """
