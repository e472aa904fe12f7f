"""VoxSAE core: all logic, as subpackages in the order data flows. `python -m core` is the CLI.

    audio -> embedders -> workspace -> sae -> training -> analysis -> labels -> dashboard
    democorpus (beside: builds the embedded default corpus)

Each subpackage's __init__ says what it holds and which layers it may import: a layer imports
only layers before it. At the top: `cli` (commands), `constants` (every on-disk name),
`errors` (the one user-facing exception hierarchy), `atomic` (temp file + rename writes),
`filehash` (big files' SHA-256, remembered while the file is provably the one hashed).
"""

__version__ = "0.1.0"
