"""Generated hold music: chord progressions, a bass line and a melody, rendered with pretty_midi.

Rendering uses FluidSynth with pretty_midi's bundled General MIDI soundfont (TimGM6mb.sf2) when
libfluidsynth and pyfluidsynth are importable, and pretty_midi's own sine synthesis otherwise;
`renderer()` says which one this machine uses (the demo corpus records it in its provenance).
"""

from __future__ import annotations

import functools

import numpy as np

from core.constants import SAMPLE_RATE

# common pop/lounge progressions as scale degrees (0-based) of a major key
PROGRESSIONS = (
    (0, 4, 5, 3),  # I V vi IV
    (0, 5, 3, 4),  # I vi IV V
    (5, 3, 0, 4),  # vi IV I V
    (0, 3, 4, 3),  # I IV V IV
    (1, 4, 0, 0),  # ii V I I
    (0, 2, 3, 4),  # I iii IV V
)
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
# General MIDI programs that sound like hold music
CHORD_PROGRAMS = (0, 4, 5, 48, 49, 88, 89, 16)  # pianos, e-pianos, strings, pads, organ
MELODY_PROGRAMS = (
    0,
    11,
    73,
    71,
    24,
    65,
    12,
    56,
)  # piano, vibes, flute, clarinet, guitar, sax, marimba, trumpet
BASS_PROGRAMS = (32, 33, 35, 42)


@functools.cache
def renderer() -> str:
    """'fluidsynth' when pyfluidsynth + libfluidsynth work here, else 'pretty_midi-synthesize'."""
    try:
        import fluidsynth  # noqa: F401
        import pretty_midi

        pm = pretty_midi.PrettyMIDI()
        inst = pretty_midi.Instrument(program=0)
        inst.notes.append(pretty_midi.Note(velocity=80, pitch=60, start=0.0, end=0.1))
        pm.instruments.append(inst)
        out = pm.fluidsynth(fs=SAMPLE_RATE)
        if out.size and np.abs(out).max() > 0:
            return "fluidsynth"
    except Exception:  # noqa: BLE001 - any failure means: fall back to the built-in synthesis
        pass
    return "pretty_midi-synthesize"


def _scale_pitch(key: int, degree: int, octave: int) -> int:
    return 12 * octave + key + MAJOR_SCALE[degree % 7] + 12 * (degree // 7)


def compose(rng: np.random.Generator, duration_s: float):
    """A random piece (pretty_midi.PrettyMIDI) at least `duration_s` long."""
    import pretty_midi

    key = int(rng.integers(0, 12))
    tempo = float(rng.uniform(70, 126))
    beat = 60.0 / tempo
    prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    chords = pretty_midi.Instrument(program=int(rng.choice(CHORD_PROGRAMS)))
    melody = pretty_midi.Instrument(program=int(rng.choice(MELODY_PROGRAMS)))
    bass = pretty_midi.Instrument(program=int(rng.choice(BASS_PROGRAMS)))
    arpeggiate = bool(rng.random() < 0.4)
    bar = 4 * beat
    n_bars = int(np.ceil(duration_s / bar)) + 1
    motif = rng.integers(0, 8, size=8)  # a repeated melodic idea, varied per bar
    for b in range(n_bars):
        t0 = b * bar
        degree = prog[b % len(prog)]
        triad = [_scale_pitch(key, degree + i, 4) for i in (0, 2, 4)]
        if arpeggiate:
            for i in range(8):
                p = triad[i % 3] + (12 if i >= 6 else 0)
                chords.notes.append(pretty_midi.Note(60, p, t0 + i * beat / 2, t0 + (i + 1) * beat / 2))
        else:
            for p in triad:
                chords.notes.append(pretty_midi.Note(55, p, t0, t0 + bar * 0.97))
        bass.notes.append(pretty_midi.Note(75, _scale_pitch(key, degree, 2), t0, t0 + 2 * beat * 0.95))
        bass.notes.append(
            pretty_midi.Note(70, _scale_pitch(key, degree + 4, 2), t0 + 2 * beat, t0 + bar * 0.95)
        )
        t = t0
        step = 0
        while t < t0 + bar - 1e-6:
            length = beat * float(rng.choice([0.5, 1.0, 1.0, 2.0]))
            length = min(length, t0 + bar - t)
            if rng.random() < 0.85:
                deg = degree + int(motif[step % len(motif)]) + int(rng.integers(-1, 2))
                melody.notes.append(
                    pretty_midi.Note(
                        int(rng.integers(70, 100)), _scale_pitch(key, deg, 5), t, t + length * 0.9
                    )
                )
            t += length
            step += 1
    pm.instruments.extend([chords, melody, bass])
    return pm


def render(pm, sr: int = SAMPLE_RATE, method: str | None = None) -> np.ndarray:
    """Render a PrettyMIDI to float32 mono at `sr`, peak-normalised to 0.5."""
    method = method or renderer()
    audio = pm.fluidsynth(fs=sr) if method == "fluidsynth" else pm.synthesize(fs=sr)
    audio = np.asarray(audio, dtype=np.float32)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    return audio * (0.5 / peak) if peak > 0 else audio


def hold_music(rng: np.random.Generator, duration_s: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """`duration_s` seconds of newly composed hold music, float32 mono at `sr`, faded in/out."""
    audio = render(compose(rng, duration_s), sr)
    n = int(round(duration_s * sr))
    audio = np.pad(audio, (0, max(0, n - audio.size)))[:n]
    fade = min(int(0.3 * sr), n // 4)
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        audio[:fade] *= ramp
        audio[-fade:] *= ramp[::-1]
    return audio
