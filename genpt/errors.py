"""The base of every error a user can fix (bad input, missing artifact, refused credentials).

`genpt` prints these as one line and exits 2, instead of a traceback. Kept free of
heavy imports so the CLI can catch them without loading torch.
"""


class GenptError(Exception):
    """A problem with the user's input or environment; the message says what and where."""
