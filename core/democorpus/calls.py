"""Pseudo-speakers and synthetic call recordings with ground truth, for the embedded default corpus.

Planning (`plan_corpus`) is cheap and runs in the main process: it draws every pseudo-speaker
(espeak accent voice x variant x pitch x range x rate x an audio-level perturbation) and every
call (who speaks, how many turns, where hold music and announcements go). Rendering
(`render_call`) runs in worker processes: it synthesises the turns, renders the hold music, lays
everything out with silences, passes the whole call through one telephone channel, saves it, and
segments the saved audio with core.audio.segmentation exactly as `ingest` would; each segment takes
its labels from the ground-truth region it overlaps most, and is measured (core.audio.attributes)
on the audio as stored.

The truth behind the measured attributes is kept per region and per segment (SYNTH_COLUMNS): the
espeak-ng pitch, pitch range and words per minute of the voice (a speaker's, or the fixed IVR
voice's for announcements; NaN for music) and the call's line-noise level (noise_db of the
telephone channel, for every region of the call, music included: it went through that line too).
espeak's pitch and rate are the voice's settings before its audio-level colouring, whose
vocal-tract warp (±6 %) moves F0 and tempo a little, and a variant shifts the pitch it starts from.
So two more columns hold a truth comparable across voices: `synth_f0_hz`, the F0 espeak-ng aims
at for the voice (its own rule on the variant's pitch line, core.democorpus.speech.espeak_f0_hz)
times the warp, and `synth_rate`, the syllable nuclei espeak-ng spoke (counted in its own IPA
phonemes of the region's sentences) per second of the region's synthesised, warped audio with
pauses of attributes.PAUSE_S or longer left out (the measured rate's own definition of speech time).

Language cues are real ones, not a channel: Spanish speakers talk through espeak-ng's Spanish
voices (es, es-419: Spanish phonology) with Spanish prosody (a faster, syllable-timed rate and a
wider pitch range); a few English speakers have a Spanish accent (a Spanish voice reading English,
the paper's false positives). Voice variants (timbre) are drawn from one pool for both languages,
and every call gets its own telephone route (band edges, noise level, gain) drawn independently
of its language.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from core.constants import SAMPLE_RATE, SPLIT_FEATURE, SPLIT_SAE

CORPUS_VERSION = 6
"""Bump when planning or rendering changes what a seed produces (part of the settings fingerprint)."""

STORE_RATE = 8_000
"""Call audio is stored as 8 kHz FLAC: it went through a telephone channel, nothing above 4 kHz."""

CLASS_VOICE, CLASS_MUSIC, CLASS_ANNOUNCEMENT = "voice", "music", "announcement"

BASE_SPEAKERS = 360
"""Pseudo-speakers at scale 1 (feature split ~31 %, es/en balanced; sae split ~12 % Spanish)."""
CALLS_PER_SPEAKER = {SPLIT_FEATURE: 2, SPLIT_SAE: 2}
"""Calls each pseudo-speaker takes part in (each with another partner), per split."""
SAE_SPEAKER_FACTOR = 1.0
"""The sae split has this many times its share of BASE_SPEAKERS (more speakers, fewer calls each)."""
TURNS_PER_SPEAKER = (3, 6)
"""Turns of each speaker in one call: integers in [low, high)."""
FEATURE_FRACTION = 0.3125
SAE_SPANISH_FRACTION = 0.12
ACCENTED_ENGLISH_FRACTION = 0.04
"""Share of English speakers who speak English with a Spanish voice (labelled language 'en')."""
MIN_SPEAKERS = 24
SPANISH_RATE, ACCENTED_RATE, ENGLISH_RATE = (215, 10), (190, 10), (155, 10)
"""espeak-ng words per minute (mean, sd) of Spanish, Spanish-accented English and English speakers."""
SPANISH_RANGE, ENGLISH_RANGE = (65, 95), (15, 45)
"""espeak-ng pitch range (0-100) drawn uniformly: Spanish intonation moves more."""
TURN_MIN_S, TURN_MAX_S = 4.3, 7.7
"""A speaker turn is made 4.3-7.7 s long where its sentences allow (one 4-8 s segment each)."""
SYNTH_COLUMNS = (
    "synth_pitch",
    "synth_pitch_range",
    "synth_wpm",
    "synth_noise_db",
    "synth_f0_hz",
    "synth_rate",
)
"""Synthesis parameters of each region and segment: espeak pitch (0-100), pitch range (0-100),
words per minute, the call's channel noise (dBFS), and the truths comparable across voices: the F0
espeak-ng aims at times the warp (Hz) and the syllables spoken per second of speech."""
SILENCE_LEVEL = 1e-3
"""Synthesised audio at or under this magnitude is silence (espeak-ng's pauses are exact zeros)."""


@dataclass(frozen=True)
class Speaker:
    speaker_id: str
    language: str
    """Spoken language: 'en' or 'es'."""
    accent: str
    """espeak-ng accent voice ('en-us', 'es-419', ...); a Spanish accent with language 'en' is accented English."""
    variant: str
    gender: str
    pitch: int
    range_: int
    rate: int
    split: str
    warp: float
    tilt_db: float
    peaks: tuple[tuple[float, float, float], ...]

    def voice_spec(self):
        from core.democorpus.speech import VoiceSpec

        return VoiceSpec(self.accent, self.variant, pitch=self.pitch, range_=self.range_, rate=self.rate)

    def perturbation(self):
        from core.democorpus.speech import Perturbation

        return Perturbation(warp=self.warp, tilt_db=self.tilt_db, peaks=self.peaks)

    def f0_hz(self) -> float:
        """The F0 espeak-ng aims at for this voice, times the warp (played warp times faster)."""
        from core.democorpus.speech import espeak_f0_hz

        return espeak_f0_hz(self.voice_spec()) * self.warp


_NO_VOICE = dict.fromkeys((c for c in SYNTH_COLUMNS if c != "synth_noise_db"), float("nan"))
"""Music has no voice: no espeak pitch, range, rate, F0 or syllables."""

# the automated announcement voices (fixed: one per language, no perturbation)
IVR_VOICES = {
    "en": ("en-us", "f5", 55, 35, 165),
    "es": ("es", "f2", 55, 35, 175),
}


def ivr_spec(language: str):
    """The VoiceSpec of a language's announcement voice."""
    from core.democorpus.speech import VoiceSpec

    accent, variant, pitch, range_, rate = IVR_VOICES[language]
    return VoiceSpec(accent, variant, pitch=pitch, range_=range_, rate=rate)


class Spoken(NamedTuple):
    """A stretch of synthesised speech and what it said."""

    audio: np.ndarray
    """float32 mono at the synthesis rate, colouring applied, pauses in it."""
    texts: list[str]
    """The sentences spoken, in order (repeats included)."""


def speech_seconds(audio: np.ndarray, sr: int) -> float:
    """Seconds of `audio` that are speech: 10 ms frames over SILENCE_LEVEL, and silent runs shorter
    than attributes.PAUSE_S (a pause that long is no speaking time, as for the measured rate)."""
    from core.audio.attributes import HOP_S, PAUSE_S, pause_frames

    hop = int(round(HOP_S * sr))
    n = audio.size // hop
    if n == 0:
        return 0.0
    silent = np.abs(audio[: n * hop]).reshape(n, hop).max(axis=1) <= SILENCE_LEVEL
    return float(n - np.count_nonzero(pause_frames(silent, int(round(PAUSE_S / HOP_S))))) * HOP_S


def syllable_rate(tts, spoken: Spoken, spec, sr: int) -> float:
    """Syllable nuclei espeak-ng spoke (its IPA for the texts) per second of speech in the audio.

    Translating moves espeak-ng's state like a synthesis: call it after the call is synthesised."""
    from core.democorpus.speech import syllable_count

    seconds = speech_seconds(spoken.audio, sr)
    if seconds <= 0:
        return float("nan")
    return sum(syllable_count(tts.phonemes(t, spec)) for t in spoken.texts) / seconds


@dataclass
class CallPlan:
    index: int
    call_id: str
    split: str
    language: str
    items: list[tuple] = field(default_factory=list)
    """('turn', speaker_id, target_s) | ('music', duration_s) | ('announcement', language, n_sentences)."""


# ------------------------------------------------------------------------------------------
def corpus_size(scale: float) -> dict[str, int]:
    """Speaker counts per split and language for a scale."""
    n = max(MIN_SPEAKERS, int(round(BASE_SPEAKERS * scale)))
    n_feature = max(8, int(round(n * FEATURE_FRACTION)))
    n_feature -= n_feature % 2
    n_sae = int(round((n - n_feature) * SAE_SPEAKER_FACTOR))
    sae_es = max(2, int(round(n_sae * SAE_SPANISH_FRACTION)))
    return {
        "feature_en": n_feature // 2,
        "feature_es": n_feature // 2,
        "sae_en": n_sae - sae_es,
        "sae_es": sae_es,
    }


def _draw_speaker(rng: np.random.Generator, sid: str, language: str, split: str, accented: bool) -> Speaker:
    from core.democorpus.speech import (
        ENGLISH_ACCENTS,
        FEMALE_VARIANTS,
        MALE_VARIANTS,
        SPANISH_ACCENTS,
        random_perturbation,
        variant_gender,
    )

    female = bool(rng.random() < 0.55)
    pool = FEMALE_VARIANTS if female else MALE_VARIANTS
    variant = str(pool[int(rng.integers(len(pool)))])
    spanish_voice = language == "es" or accented
    accent = str(rng.choice(SPANISH_ACCENTS if spanish_voice else ENGLISH_ACCENTS))
    if language == "es":  # Spanish prosody: syllable-timed, faster, wider pitch movement
        rate = int(np.clip(rng.normal(*SPANISH_RATE), SPANISH_RATE[0] - 25, SPANISH_RATE[0] + 35))
        range_ = int(rng.uniform(*SPANISH_RANGE))
    elif accented:  # a Spanish speaker reading English: Spanish intonation, a little slower
        rate = int(np.clip(rng.normal(*ACCENTED_RATE), ACCENTED_RATE[0] - 25, ACCENTED_RATE[0] + 30))
        range_ = int(rng.uniform(*SPANISH_RANGE))
    else:
        rate = int(np.clip(rng.normal(*ENGLISH_RATE), ENGLISH_RATE[0] - 30, ENGLISH_RATE[0] + 25))
        range_ = int(rng.uniform(*ENGLISH_RANGE))
    pert = random_perturbation(rng)
    return Speaker(
        speaker_id=sid,
        language=language,
        accent=accent,
        variant=variant,
        gender=variant_gender(variant),
        pitch=int(rng.uniform(25, 75)),
        range_=range_,
        rate=rate,
        split=split,
        warp=pert.warp,
        tilt_db=pert.tilt_db,
        peaks=pert.peaks,
    )


def plan_corpus(seed: int, scale: float) -> tuple[dict[str, Speaker], list[CallPlan]]:
    """Every pseudo-speaker and every call of the corpus, deterministic from (seed, scale)."""
    rng = np.random.default_rng([seed, 0])
    sizes = corpus_size(scale)
    speakers: dict[str, Speaker] = {}
    groups: dict[tuple[str, str], list[str]] = {}
    counter = 0
    for split in (SPLIT_FEATURE, SPLIT_SAE):
        for language in ("en", "es"):
            ids = []
            for _ in range(sizes[f"{split}_{language}"]):
                counter += 1
                sid = f"spk{counter:04d}"
                accented = language == "en" and bool(rng.random() < ACCENTED_ENGLISH_FRACTION)
                speakers[sid] = _draw_speaker(rng, sid, language, split, accented)
                ids.append(sid)
            groups[(split, language)] = ids

    calls: list[CallPlan] = []
    for split in (SPLIT_FEATURE, SPLIT_SAE):
        music_p, music_len = (0.8, (14.0, 30.0)) if split == SPLIT_FEATURE else (0.28, (8.0, 20.0))
        announce_p = 0.0 if split == SPLIT_FEATURE else 0.3
        for language in ("en", "es"):
            ids = groups[(split, language)]
            # every speaker takes part in two calls, with two different partners
            for _round in range(CALLS_PER_SPEAKER[split]):
                order = [ids[i] for i in rng.permutation(len(ids))]
                pairs = [order[i : i + 2] for i in range(0, len(order), 2)]
                for pair in pairs:
                    idx = len(calls)
                    plan = CallPlan(idx, f"call{idx + 1:05d}", split, language)
                    if rng.random() < announce_p:
                        plan.items.append(("announcement", language, int(rng.integers(1, 3))))
                    n_turns = int(rng.integers(*TURNS_PER_SPEAKER)) * len(pair)
                    music_at = int(rng.integers(1, n_turns)) if rng.random() < music_p else -1
                    for t in range(n_turns):
                        if t == music_at:
                            plan.items.append(("music", float(rng.uniform(*music_len))))
                        plan.items.append(("turn", pair[t % len(pair)], float(rng.uniform(4.4, 6.5))))
                    calls.append(plan)
    return speakers, calls


# ------------------------------------------------------------------------------------------
def _trim(audio: np.ndarray, threshold: float = 1e-3) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > threshold)
    return audio[loud[0] : loud[-1] + 1] if loud.size else audio[:0]


def _level(audio: np.ndarray, rms_db: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    return audio * np.float32(10 ** (rms_db / 20.0) / rms) if rms > 0 else audio


def synth_turn(tts, speaker: Speaker, rng: np.random.Generator, target_s: float, sr: int) -> Spoken:
    """Sentences of one speaker until at least `target_s` of speech, with short (bridged) pauses.

    A turn is kept under TURN_MAX_S where the sentences allow, so that it makes one segment.
    """
    from core.democorpus.speech import perturb
    from core.democorpus.text import sentence

    spec, pert = speaker.voice_spec(), speaker.perturbation()
    parts: list[np.ndarray] = []
    texts: list[str] = []
    total = 0
    tries = 0
    while total < target_s * sr:
        text = sentence(rng, speaker.language)
        audio = _trim(perturb(tts.synth(text, spec, sr), sr, pert))
        gap = np.zeros(int(rng.uniform(0.15, 0.35) * sr), dtype=np.float32) if parts else None
        extra = audio.size + (gap.size if gap is not None else 0)
        if total + extra > TURN_MAX_S * sr and tries < 6:
            tries += 1
            if total >= TURN_MIN_S * sr:
                break
            continue  # too long to fit: draw another sentence
        if gap is not None:
            parts.append(gap)
        parts.append(audio)
        texts.append(text)
        total += extra
    return Spoken(np.concatenate(parts), texts)


def synth_announcement(tts, language: str, rng: np.random.Generator, n: int, sr: int) -> Spoken:
    from core.democorpus.text import IVR_ANNOUNCEMENTS

    spec = ivr_spec(language)
    pool = IVR_ANNOUNCEMENTS[language]
    chosen = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
    parts, texts = [], [pool[int(i)] for i in chosen]
    for k, text in enumerate(texts):
        if k:
            parts.append(np.zeros(int(0.3 * sr), dtype=np.float32))
        parts.append(_trim(tts.synth(text, spec, sr)))
    audio = np.concatenate(parts)
    # announcements are short: repeat the message until it makes one segment (>= 4.5 s)
    while audio.size < 4.5 * sr:
        audio = np.concatenate([audio, np.zeros(int(0.3 * sr), np.float32), parts[0]])
        texts.append(texts[0])
    return Spoken(audio, texts)


@dataclass
class CallResult:
    index: int
    call_id: str
    source: str
    duration_s: float
    regions: list[dict]
    """Ground truth: start_s, end_s, class, speaker, language, gender, accent, SYNTH_COLUMNS."""
    segments: list[dict]
    """Segments found by core.audio.segmentation with their labels (start_s, end_s, + region labels)
    and their MEASURED_ATTRIBUTES."""
    dropped: int
    """Segments that overlapped no single region enough to label (counted, not kept)."""


def label_segments(segments, regions: list[dict], min_purity: float = 0.8) -> tuple[list[dict], int]:
    """Give each segment the labels of the ground-truth region it overlaps most."""
    out, dropped = [], 0
    for seg in segments:
        best, best_overlap = None, 0.0
        for reg in regions:
            overlap = min(seg.end_s, reg["end_s"]) - max(seg.start_s, reg["start_s"])
            if overlap > best_overlap:
                best, best_overlap = reg, overlap
        dur = seg.end_s - seg.start_s
        if best is None or best_overlap < min_purity * dur:
            dropped += 1
            continue
        row = {k: v for k, v in best.items() if k not in ("start_s", "end_s")}
        row.update(start_s=float(seg.start_s), end_s=float(seg.end_s))
        out.append(row)
    return out, dropped


def render_call(plan: CallPlan, speakers: dict[str, Speaker], out_dir: str, seed: int) -> CallResult:
    """Synthesise, lay out, channel, save (8 kHz FLAC) and segment one call. Runs in a worker."""
    import soundfile as sf

    from core.audio.attributes import measure_segments
    from core.audio.channel import telephone_channel
    from core.audio.read import cut, load_audio, resample
    from core.audio.segmentation import segment_audio
    from core.democorpus.music import hold_music
    from core.democorpus.speech import Espeak, espeak_f0_hz

    sr = SAMPLE_RATE
    rng = np.random.default_rng([seed, 1, plan.index])
    tts = Espeak()
    pieces: list[np.ndarray] = []
    regions: list[dict] = []
    spoken: list[tuple[dict, Spoken, object]] = []  # (region, speech, voice): rates once all is synthesised
    cursor = 0

    def silence(lo: float, hi: float) -> None:
        nonlocal cursor
        n = int(rng.uniform(lo, hi) * sr)
        pieces.append(np.zeros(n, dtype=np.float32))
        cursor += n

    silence(0.4, 1.2)
    speech_db = float(rng.uniform(-24, -19))  # this call's loudness
    for item in plan.items:
        kind = item[0]
        if kind == "turn":
            spk = speakers[item[1]]
            turn = synth_turn(tts, spk, rng, item[2], sr)
            voice = spk.voice_spec()
            audio = _level(turn.audio, speech_db + float(rng.uniform(-1.5, 1.5)))
            label = dict(
                cls=CLASS_VOICE, speaker=spk.speaker_id, language=spk.language, gender=spk.gender,
                accent=spk.accent, synth_pitch=spk.pitch, synth_pitch_range=spk.range_, synth_wpm=spk.rate,
                synth_f0_hz=spk.f0_hz(),
            )  # fmt: skip
        elif kind == "music":
            audio = _level(hold_music(rng, item[1], sr), speech_db - float(rng.uniform(0, 4)))
            label = dict(cls=CLASS_MUSIC, speaker="", language="", gender="", accent="", **_NO_VOICE)
        else:
            language = item[1]
            turn = synth_announcement(tts, language, rng, item[2], sr)
            voice = ivr_spec(language)
            audio = _level(turn.audio, speech_db)
            label = dict(
                cls=CLASS_ANNOUNCEMENT, speaker=f"ivr-{language}", language=language, gender="f",
                accent=voice.voice, synth_pitch=voice.pitch, synth_pitch_range=voice.range_, synth_wpm=voice.rate,
                synth_f0_hz=espeak_f0_hz(voice),  # no colouring: the fixed IVR voice is not warped
            )  # fmt: skip
        regions.append(
            dict(
                start_s=cursor / sr, end_s=(cursor + audio.size) / sr, **{"class": label.pop("cls")}, **label,
                split=plan.split,
            )
        )  # fmt: skip
        if kind != "music":
            spoken.append((regions[-1], turn, voice))
        pieces.append(audio.astype(np.float32))
        cursor += audio.size
        silence(0.8, 1.8)
    call = np.concatenate(pieces)
    for region, turn, voice in spoken:  # every synthesis is done: translating can move no audio now
        region["synth_rate"] = syllable_rate(tts, turn, voice, sr)
    # this call's own telephone route, drawn independently of its language
    band = (float(rng.uniform(250, 350)), float(rng.uniform(3200, 3500)))
    noise_db = float(rng.uniform(-68, -60))
    call = telephone_channel(call, sr, band_hz=band, noise_db=noise_db, rng=rng)
    for r in regions:
        r["synth_noise_db"] = noise_db
    call = np.clip(call, -1.0, 1.0)
    source = f"{plan.call_id}.flac"
    path = Path(out_dir) / source
    tmp = path.with_name(path.name + ".part")
    sf.write(str(tmp), resample(call, sr, STORE_RATE), STORE_RATE, format="FLAC", subtype="PCM_16")
    tmp.replace(path)
    stored = load_audio(path, sr)  # segment what is stored, exactly as `ingest` would see it
    segs, dropped = label_segments(segment_audio(stored, sr), regions)
    measured = measure_segments([cut(stored, sr, s["start_s"], s["end_s"]) for s in segs], sr)
    for seg, values in zip(segs, measured.to_dict("records"), strict=True):
        seg.update(values)
    for r in regions:
        r["call"] = plan.call_id
    return CallResult(plan.index, plan.call_id, source, stored.size / sr, regions, segs, dropped)


def warm_up() -> None:
    """Import and run once everything render_call needs except espeak-ng (JIT, lazy imports).

    Run in the demo-corpus forkserver, so each freshly forked render worker starts warm. Left
    untouched there: espeak-ng (its state must be pristine in every worker) and FluidSynth (a
    child forked after the parent rendered with it hangs).
    """
    from core.audio.attributes import measure_segments
    from core.audio.channel import telephone_channel
    from core.audio.read import resample
    from core.audio.segmentation import segment_audio
    from core.democorpus.speech import perturb, random_perturbation

    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.1, 5 * SAMPLE_RATE).astype(np.float32)
    segment_audio(noise, SAMPLE_RATE)
    telephone_channel(noise, SAMPLE_RATE, noise_db=-60, rng=rng)
    perturb(noise, SAMPLE_RATE, random_perturbation(rng))
    measure_segments([noise], SAMPLE_RATE)
    resample(noise, SAMPLE_RATE, STORE_RATE)
    import pretty_midi  # noqa: F401  (import only)


def segment_numbers(seg: dict) -> dict[str, float]:
    """A segment's numeric columns for the segment table: SYNTH_COLUMNS then MEASURED_ATTRIBUTES."""
    from core.constants import MEASURED_ATTRIBUTES

    return {c: float(seg[c]) for c in (*SYNTH_COLUMNS, *MEASURED_ATTRIBUTES)}
