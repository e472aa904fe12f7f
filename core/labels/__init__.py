"""Layer 7, labels: analysts' names for latents (`store`: SQLite, WAL, full history, CSV/JSON
import and export).

May import: core.constants, core.errors (model sizes come in as arguments). Nothing above.
"""
