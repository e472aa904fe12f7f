"""VoxSAE core: all logic, one module per concept, in the order data flows.

audio -> segmentation -> embedders -> workspace -> sae (architectures) -> training (grid)
-> features (datasets) -> identification -> grid -> splitting -> steering -> suggestions
-> labels -> report. `python -m core` is the CLI.
"""

__version__ = "0.1.0"
