"""The one exception type a user can cause: its message is a single clear sentence."""


class MaltError(Exception):
    """A problem with the user's input (config, file, row, server); printed without a traceback."""
