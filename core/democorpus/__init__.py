"""Beside the pipeline, democorpus: the embedded default corpus synthesised offline.

`text` (sentences), `speech` (espeak-ng voices through ctypes), `music` (MIDI hold music),
`calls` (two speakers, music and announcements through the telephone channel), `build`
(the `demo-corpus` command), `synthetic_voice` (tiny formant voices for tests and benches),
`worker_preload` (warms a render worker).

May import: core.audio, core.embedders, core.workspace, core.constants, core.errors, core.atomic.
Nothing in the pipeline imports it.
"""
