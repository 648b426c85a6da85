"""The one exception type for user mistakes.

Stage scripts catch :class:`KennenError` and print its message as a single line
(``error: ...``) instead of a traceback: bad params, missing or corrupt files,
unreachable sources. Anything else is a bug and keeps its traceback.
"""


class KennenError(Exception):
    """A user-facing error whose message names the offending key, file or value."""
