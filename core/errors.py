"""The one exception type a user sees.

Everything that is the user's fault (bad audio, malformed CSV, unknown latent, ...) raises
VoxSAEError with a message that names what and where; the CLI prints it as one line and exits 2.
"""

from __future__ import annotations


class VoxSAEError(Exception):
    """A user-facing error: the message alone must say what is wrong and where."""


class InputError(VoxSAEError):
    """Bad input data: corrupt audio, NaN embeddings, malformed metadata, wrong dimension."""


class NotFoundError(VoxSAEError):
    """Something named by the user does not exist: workspace, model, attribute, latent id."""
