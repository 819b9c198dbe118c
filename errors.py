"""The one exception type for errors a user caused and can fix, and how a library's words join vcap's."""


class VcapError(Exception):
    """An error the user caused and can fix (bad file, wrong option); the CLI prints it on one line."""


def library_text(exc: BaseException | str, limit: int = 200, line: int = 0) -> str:
    """A library's own message, to follow vcap's reason in brackets: one line of it (the first, or `line`),
    its first sentence if the line is long, cut at a word boundary if that still is: a page of a library's
    advice would bury the reason, and a cut word reads as a typo."""
    lines = [text.strip() for text in str(exc).splitlines() if text.strip()]
    text = lines[line] if lines else type(exc).__name__
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)  # a NUL or escape stays visible
    if len(text) > limit and ". " in text:
        text = text.split(". ")[0] + "."
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " ..."
    return text


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a training run, knowing what its folder holds: `resumable` when OUT/last.pt
    is this run's, so --resume continues it; otherwise the folder holds no epoch of it."""

    def __init__(self, resumable: bool):
        super().__init__()
        self.resumable = resumable
