"""The one exception type for errors a user caused and can fix."""


class VcapError(Exception):
    """An error the user caused and can fix (bad file, wrong option); the CLI prints it on one line."""
