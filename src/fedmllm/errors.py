"""The one exception type users see: a message that names the file, line or key at fault."""


class FedmllmError(Exception):
    """A user-facing error. The CLI prints its message alone, without a traceback."""


def where(path: object, line: int | None = None, key: str | None = None) -> str:
    """Format a location as `file:line` or `file [key]` for error messages."""
    text = str(path)
    if line is not None:
        text += f":{line}"
    if key is not None:
        text += f" [{key}]"
    return text
