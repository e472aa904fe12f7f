"""Layer 7, labels: analysts' names for latents (`store`: SQLite, WAL, full history, CSV/JSON
import and export).

May import: core.constants, core.errors, core.atomic (WriteError for a failed save; model sizes come
in as arguments). Nothing above.
"""
