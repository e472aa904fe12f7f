"""Offline speech synthesis with espeak-ng, driven through ctypes.

The PyPI package `espeakng_loader` ships libespeak-ng.so and its espeak-ng-data folder, so no
system package or network is needed. espeak-ng keeps global state (one current voice, one set of
parameters), so each process synthesises with one `Espeak` instance and parallel work uses
separate worker processes, never threads.

    tts = Espeak()                       # initialises the library once per process
    audio = tts.synth("Hello", VoiceSpec("en-us", "f3", pitch=60, range_=50, rate=170))
    # -> float32 mono at 16 kHz (espeak renders 22050 Hz; resampled with soxr)
    espeak_f0_hz(spec)                   # the F0 (Hz) espeak-ng aims at for this voice: its own rule
    syllable_count(tts.phonemes(text, spec))   # syllable nuclei espeak-ng speaks for the text

The F0 rule is espeak-ng's own (voices.c reads a variant's `pitch BASE TOP` line, default 80 118;
wavegen.c SetPitch2 scales the base by pitch_adjust_tab[pitch] and the span by the range
parameter), taken at CONTOUR_HEIGHT of the intonation contour: checked against the measured F0
of flat (range 0) speech to within 0.5 Hz, the contour height calibrated once (see its docstring).
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from core.constants import SAMPLE_RATE
from core.errors import InputError, VoxSAEError

# espeak_AUDIO_OUTPUT
AUDIO_OUTPUT_SYNCHRONOUS = 2
# espeak_PARAMETER
ESPEAK_RATE = 1
ESPEAK_VOLUME = 2
ESPEAK_PITCH = 3
ESPEAK_RANGE = 4
ESPEAK_WORDGAP = 7
# espeak_POSITION_TYPE / flags
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
ESPEAK_INITIALIZE_DONT_EXIT = 0x8000

ESPEAK_RATE_HZ = 22_050
PHONEMES_IPA = 0x02
"""espeak_TextToPhonemes phonememode: IPA as UTF-8 (bit 1)."""

# Voice variants (files in espeak-ng-data/voices/!v) that sound like people, by gender.
# Robots, whispers, croaks and the "announcer" are left out.
FEMALE_VARIANTS = (
    "f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "anika", "aunty",
    "belinda", "linda", "steph", "steph2", "steph3",
)  # fmt: skip
MALE_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Denis", "Diogo", "Henrique", "Hugo",
    "Marco", "antonio", "michel", "miguel", "sandro", "travis", "victor", "Alex", "Andy",
    "Gene", "Jacky", "Lee", "Mike", "adam", "benjamin", "caleb", "david", "ed", "edward",
    "ian", "john", "marcelo", "max", "norbert", "pablo", "paul", "pedro", "rob", "robert",
    "zac",
)  # fmt: skip

# espeak-ng voice names per spoken language (accents)
ENGLISH_ACCENTS = ("en-us", "en-gb", "en-029", "en-gb-scotland", "en-gb-x-rp", "en-us-nyc")
SPANISH_ACCENTS = ("es", "es-419")
# accent label -> the name espeak-ng's SetVoiceByName accepts (British English is the voice "en")
ESPEAK_VOICE_NAMES = {"en-gb": "en"}


def variant_gender(variant: str) -> str:
    """'f' or 'm' for a variant from FEMALE_VARIANTS / MALE_VARIANTS."""
    if variant in FEMALE_VARIANTS:
        return "f"
    if variant in MALE_VARIANTS:
        return "m"
    raise InputError(f"unknown espeak voice variant {variant!r}")


@dataclass(frozen=True)
class VoiceSpec:
    """One espeak-ng voice setting: accent voice + variant + prosody parameters."""

    voice: str
    """espeak-ng voice name, e.g. 'en-us', 'es-419'."""
    variant: str = ""
    """Variant file name from voices/!v (e.g. 'f3', 'm2'); '' for the voice's default."""
    pitch: int = 50
    """Base pitch, 0-100 (espeak scale)."""
    range_: int = 50
    """Pitch range (intonation), 0-100."""
    rate: int = 175
    """Speaking rate in words per minute (80-450)."""
    wordgap: int = 0
    """Extra pause between words, in units of 10 ms at normal speed."""

    @property
    def name(self) -> str:
        voice = ESPEAK_VOICE_NAMES.get(self.voice, self.voice)
        return f"{voice}+{self.variant}" if self.variant else voice


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class Espeak:
    """The process's espeak-ng engine. Not thread safe (espeak-ng is one global engine)."""

    _instance: Espeak | None = None
    _pid: int | None = None
    _lock = threading.Lock()

    def __new__(cls) -> Espeak:
        # one engine per process; a forked child re-initialises its own copy
        if cls._instance is None or cls._pid != os.getpid():
            inst = super().__new__(cls)
            inst._init()
            cls._instance, cls._pid = inst, os.getpid()
        return cls._instance

    def _init(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - pinned in requirements.txt
            raise VoxSAEError(f"espeakng_loader is not installed ({exc}); run `make setup`") from None
        lib_path = espeakng_loader.get_library_path()
        data_path = espeakng_loader.get_data_path()
        self.data_path = Path(data_path)
        lib = ctypes.CDLL(lib_path)
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        # espeak-ng seeds its noise generator (breathy / rough variants such as f2) from the clock;
        # a fixed seed per utterance makes the audio a function of (text, voice) alone
        self._set_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._set_seed is not None:
            self._set_seed.argtypes = [ctypes.c_long]
            self._set_seed.restype = None
        rate = lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 500, str(data_path).encode(), ESPEAK_INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise VoxSAEError(f"espeak-ng failed to initialise (data path {data_path})")
        self.rate_hz = int(rate)
        self._lib = lib
        self._chunks: list[np.ndarray] = []

        def _collect(wav, numsamples, events):  # called from inside espeak_Synth
            if numsamples > 0 and wav:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
            return 0  # 0 = continue

        self._callback = _CALLBACK(_collect)  # keep a reference: ctypes must not free it
        lib.espeak_SetSynthCallback(self._callback)
        self._current: str | None = None

    def _set_voice(self, spec: VoiceSpec) -> None:
        if self._current != spec.name:
            err = self._lib.espeak_SetVoiceByName(spec.name.encode())
            if err != 0:
                raise InputError(f"espeak-ng has no voice {spec.name!r} (error {err})")
            self._current = spec.name
        self._lib.espeak_SetParameter(ESPEAK_RATE, int(np.clip(spec.rate, 80, 450)), 0)
        self._lib.espeak_SetParameter(ESPEAK_PITCH, int(np.clip(spec.pitch, 0, 100)), 0)
        self._lib.espeak_SetParameter(ESPEAK_RANGE, int(np.clip(spec.range_, 0, 100)), 0)
        self._lib.espeak_SetParameter(ESPEAK_WORDGAP, int(max(0, spec.wordgap)), 0)
        self._lib.espeak_SetParameter(ESPEAK_VOLUME, 100, 0)

    def synth_native(self, text: str, spec: VoiceSpec) -> np.ndarray:
        """Synthesise `text`; float32 mono at espeak's own rate (22050 Hz)."""
        if not text.strip():
            raise InputError("espeak-ng: empty text")
        with self._lock:
            self._set_voice(spec)
            if self._set_seed is not None:
                self._set_seed(zlib.crc32(f"{spec}|{text}".encode()))
            self._chunks = []
            data = text.encode("utf-8") + b"\x00"
            buf = ctypes.create_string_buffer(data)
            err = self._lib.espeak_Synth(buf, len(data), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None)
            self._lib.espeak_Synchronize()
            if err != 0:
                raise VoxSAEError(f"espeak-ng synthesis failed (error {err}) for voice {spec.name}")
            chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return (np.concatenate(chunks).astype(np.float32) / 32768.0).astype(np.float32)

    def synth(self, text: str, spec: VoiceSpec, sr: int = SAMPLE_RATE) -> np.ndarray:
        """Synthesise `text` with `spec`; float32 mono at `sr` (16 kHz by default)."""
        native = self.synth_native(text, spec)
        if native.size == 0 or sr == self.rate_hz:
            return native
        return np.asarray(soxr.resample(native, self.rate_hz, sr), dtype=np.float32)

    def phonemes(self, text: str, spec: VoiceSpec) -> str:
        """The IPA phonemes espeak-ng speaks for `text` with `spec`'s voice, clauses space-separated.

        Translating text moves espeak-ng's internal state like a synthesis does (see
        core.democorpus.build.render_calls): call it after a call's audio is synthesised."""
        if not text.strip():
            raise InputError("espeak-ng: empty text")
        lib = self._lib
        if not getattr(self, "_phonemes_ready", False):
            lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
            lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
            self._phonemes_ready = True
        clauses = []
        with self._lock:
            self._set_voice(spec)
            buf = ctypes.create_string_buffer(text.encode("utf-8") + b"\x00")
            cursor = ctypes.c_void_p(ctypes.addressof(buf))
            while cursor.value:  # one clause per call; espeak-ng moves the cursor, NULL at the end
                out = lib.espeak_TextToPhonemes(ctypes.byref(cursor), ESPEAK_CHARS_UTF8, PHONEMES_IPA)
                if out:
                    clauses.append(out.decode("utf-8", errors="replace"))
        return " ".join(clauses)


def synth(text: str, spec: VoiceSpec, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Module-level shortcut: synthesise with this process's engine."""
    return Espeak().synth(text, spec, sr)


# ------------------------------------------------------------------------------------------
# the truth behind measured F0 and rate: what espeak-ng aims at and what it says

# wavegen.c: pitch_adjust_tab, "set from y = pow(2,x) * 128, x=-1 to 1", indexed by the pitch parameter
PITCH_ADJUST_TAB = (
    64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 86, 87, 88,
    89, 91, 92, 93, 94, 96, 97, 98, 100, 101, 103, 104, 105, 107, 108, 110, 111, 113, 115, 116, 118,
    119, 121, 123, 124, 126, 128, 130, 132, 133, 135, 137, 139, 141, 143, 145, 147, 149, 151, 153,
    155, 158, 160, 162, 164, 167, 169, 171, 174, 176, 179, 181, 184, 186, 189, 191, 194, 197, 199,
    202, 205, 208, 211, 214, 217, 220, 223, 226, 229, 232, 236, 239, 242, 246, 249, 252, 254, 255,
)  # fmt: skip
DEFAULT_VOICE_PITCH = (80, 118)
"""voices.c VoiceReset: the `pitch` of a voice whose files set none (no accent voice used here sets one)."""
CONTOUR_HEIGHT = 55.0
"""Where espeak-ng's intonation contour (0-254 over the voice's pitch span) sits at the median F0 of
customer-service speech. Calibrated, not read from the source (the contour comes from compiled tunes
and each sentence's stress pattern): the median F0 of 6 English and 6 Spanish sentences, 5 variants
x 2 (pitch, range) settings per accent voice, measured with core.audio.attributes, inverts the rule
to 55-57 on every English accent and 54-55 on both Spanish ones; a single question reads up to 73."""


@functools.cache
def variant_pitch(variant: str) -> tuple[int, int]:
    """(BASE, TOP) Hz of a variant's `pitch` line in espeak-ng-data/voices/!v, DEFAULT_VOICE_PITCH if none."""
    import espeakng_loader

    path = Path(espeakng_loader.get_data_path()) / "voices" / "!v" / variant
    if not variant or not path.is_file():
        raise InputError(f"unknown espeak voice variant {variant!r} (no file {path})")
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "pitch":
            return int(words[1]), int(words[2])
    return DEFAULT_VOICE_PITCH


def espeak_f0_hz(spec: VoiceSpec, contour: float = CONTOUR_HEIGHT) -> float:
    """The F0 (Hz) espeak-ng produces for `spec` at `contour` (0-254) of its intonation contour.

    voices.c turns `pitch BASE TOP` into pitch_base = (BASE - 9) << 12 and pitch_range =
    (TOP - BASE) * 108 (Hz << 12 units); wavegen.c SetPitch2 scales the base by
    pitch_adjust_tab[pitch] / 128, the span by range / 50, lowers the base by 18 per unit the span
    grew (so a wider range moves around the same pitch), and a contour point h sits at
    base + h * span / 2. The accent voice does not enter: none of them sets a pitch.
    """
    lo, hi = variant_pitch(spec.variant) if spec.variant else DEFAULT_VOICE_PITCH
    voice_base, voice_span = (lo - 9) << 12, (hi - lo) * 108
    pitch = int(np.clip(spec.pitch, 0, 100))
    span = voice_span * int(np.clip(spec.range_, 0, 100)) // 50
    base = voice_base * PITCH_ADJUST_TAB[pitch] // 128 - (span - voice_span) * 18
    return (base + contour * span / 2) / 4096


IPA_VOWELS = frozenset("aeiouyæɐɑɒɔəɘɚɛɜɝɞɤɨɪʊʉʌʏøœɶɯᵻ")
"""IPA vowel letters espeak-ng writes (ᵻ is its reduced vowel)."""
_OFFGLIDES = {"ɪ": "aeɔoʌɐ", "ʊ": "aeoɐə", "ə": "ɪʊɛe"}
"""Second halves of diphthongs (aɪ eɪ ɔɪ aʊ oʊ əʊ, the centring ɪə ʊə ɛə): not a nucleus of their own."""
SYLLABIC = "\u0329"
"""Combining vertical line below: a syllabic consonant (a nucleus)."""


def syllable_count(ipa: str) -> int:
    """Syllable nuclei of an IPA string: vowels, less diphthong off-glides, plus syllabic consonants."""
    count, previous = 0, ""
    for char in ipa:
        if char in IPA_VOWELS:
            if not (previous and previous in _OFFGLIDES.get(char, "")):
                count += 1
        elif char == SYLLABIC:
            count += 1
        if char != "ː":  # a length mark keeps the vowel before it: "iːə" is two nuclei, "ɪə" one
            previous = char if char in IPA_VOWELS else ""
    return count


# ------------------------------------------------------------------------------------------
# audio-level perturbation: what makes two speakers on the same espeak variant sound different


@dataclass(frozen=True)
class Perturbation:
    """A speaker's fixed audio-level colouring, applied after synthesis."""

    warp: float = 1.0
    """Resampling factor (>1 shortens the vocal tract: higher formants and pitch), e.g. 0.93-1.07."""
    tilt_db: float = 0.0
    """Spectral tilt in dB per octave above 1 kHz (negative = darker voice)."""
    peaks: tuple[tuple[float, float, float], ...] = ()
    """Peaking EQ bands as (centre Hz, gain dB, Q): a formant-like resonance shift."""


def _peaking_sos(f0: float, gain_db: float, q: float, sr: int) -> np.ndarray:
    # RBJ audio-EQ-cookbook peaking filter as one second-order section
    a = 10 ** (gain_db / 40.0)
    w0 = 2 * np.pi * f0 / sr
    alpha = np.sin(w0) / (2 * q)
    b0, b1, b2 = 1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a
    a0, a1, a2 = 1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a
    return np.array([[b0 / a0, b1 / a0, b2 / a0, 1.0, a1 / a0, a2 / a0]])


def perturb(audio: np.ndarray, sr: int, p: Perturbation) -> np.ndarray:
    """Apply a Perturbation to float32 mono audio at `sr`; returns float32 at `sr`."""
    import scipy.signal

    x = np.asarray(audio, dtype=np.float32)
    if x.size == 0:
        return x
    if abs(p.warp - 1.0) > 1e-4:
        # play the signal `warp` times faster: resample to sr/warp, then treat it as sr
        x = np.asarray(soxr.resample(x, sr, int(round(sr / p.warp))), dtype=np.float32)
    if p.tilt_db:
        # first-order shelf approximating tilt_db per octave above 1 kHz (3 octaves to 8 kHz)
        sos = _peaking_sos(min(3000.0, 0.4 * sr), p.tilt_db * 1.5, 0.5, sr)
        x = scipy.signal.sosfilt(sos, x).astype(np.float32)
    for f0, gain, q in p.peaks:
        if 50.0 < f0 < 0.45 * sr:
            x = scipy.signal.sosfilt(_peaking_sos(f0, gain, q, sr), x).astype(np.float32)
    return x


def random_perturbation(rng: np.random.Generator, strength: float = 1.0) -> Perturbation:
    """A random speaker colouring: vocal-tract warp, tilt, two formant-region EQ bands."""
    peaks = tuple(
        (float(rng.uniform(lo, hi)), float(rng.uniform(-6, 6) * strength), float(rng.uniform(1.0, 3.0)))
        for lo, hi in ((400.0, 1100.0), (1200.0, 3000.0))
    )
    return Perturbation(
        warp=float(1.0 + rng.uniform(-0.06, 0.06) * strength),
        tilt_db=float(rng.uniform(-3.0, 3.0) * strength),
        peaks=peaks,
    )
