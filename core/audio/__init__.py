"""Layer 1, audio: read any file to 16 kHz mono (`read`), cut it into 4-8 s non-silent segments
(`segmentation`), the telephone channel simulation (`channel`), and the continuous attributes
measured per segment: pitch, loudness, speaking rate, SNR, voicing (`attributes`).

May import: core.constants, core.errors, core.atomic. Nothing else of core.
"""
