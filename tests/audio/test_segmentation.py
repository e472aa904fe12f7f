"""core.audio.segmentation on constructed audio with known boundaries (tone bursts + silences)."""

from __future__ import annotations

import numpy as np
import pytest

from core.audio.segmentation import Region, SegmentationConfig, find_nonsilent, segment_audio, split_region
from core.errors import InputError

SR = 16000
CFG = SegmentationConfig(pad_s=0.0)
FRAME = CFG.frame_s  # boundaries must be within about one analysis frame


def build(layout, sr=SR, noise_db=-70.0, seed=0):
    """layout: list of (seconds, amplitude) pieces; amplitude 0 = silence. Returns audio, truth."""
    rng = np.random.default_rng(seed)
    pieces, truth, t = [], [], 0.0
    for seconds, amp in layout:
        n = int(round(seconds * sr))
        if amp > 0:
            tt = np.arange(n) / sr
            # harmonic-rich burst with a slow amplitude wobble, like voiced sound
            x = sum(np.sin(2 * np.pi * f * tt) / (i + 1) for i, f in enumerate((180, 360, 720, 1400)))
            x = amp * x / np.max(np.abs(x)) * (0.7 + 0.3 * np.sin(2 * np.pi * 3 * tt))
            truth.append((t, t + seconds))
        else:
            x = np.zeros(n)
        pieces.append(x)
        t += seconds
    audio = np.concatenate(pieces)
    audio = audio + rng.normal(0, 10 ** (noise_db / 20), audio.shape)
    return audio.astype(np.float32), truth


def assert_regions(found, truth, tol=FRAME):
    assert len(found) == len(truth), (found, truth)
    for reg, (start, end) in zip(found, truth, strict=True):
        assert abs(reg.start_s - start) <= tol, (reg, start)
        assert abs(reg.end_s - end) <= tol, (reg, end)


def test_bursts_and_silences_boundaries():
    audio, truth = build([(1.0, 0), (5.0, 0.5), (1.5, 0), (3.0, 0.2), (2.0, 0), (6.5, 0.05), (0.7, 0)])
    assert_regions(find_nonsilent(audio, SR, CFG), truth)


def test_short_gap_bridged_long_gap_splits():
    audio, _ = build([(0.5, 0), (2.0, 0.5), (0.2, 0), (2.5, 0.5), (1.0, 0), (3.0, 0.5), (0.5, 0)])
    found = find_nonsilent(audio, SR, CFG)
    assert_regions(found, [(0.5, 5.2), (6.2, 9.2)])


def test_blip_ignored_and_quiet_noise_is_silence():
    audio, _ = build([(1.0, 0), (0.05, 0.5), (1.0, 0), (4.0, 0.3), (1.0, 0)], noise_db=-55)
    assert_regions(find_nonsilent(audio, SR, CFG), [(2.05, 6.05)])


def test_padding_clipped_to_file():
    audio, _ = build([(0.02, 0), (3.0, 0.5), (1.0, 0)])
    found = find_nonsilent(audio, SR, SegmentationConfig(pad_s=0.25))
    assert len(found) == 1
    assert found[0].start_s == 0.0  # clipped
    assert abs(found[0].end_s - 3.27) <= FRAME


def test_segments_long_region_cut_into_equal_pieces():
    audio, _ = build([(1.0, 0), (20.0, 0.5), (1.0, 0)])
    segs = segment_audio(audio, SR, CFG)
    assert len(segs) == 3  # ceil(20 / 8)
    lengths = [s.duration_s for s in segs]
    assert all(4.0 <= d <= 8.0 for d in lengths)
    assert max(lengths) - min(lengths) < 1e-6
    assert abs(segs[0].start_s - 1.0) <= FRAME and abs(segs[-1].end_s - 21.0) <= FRAME
    for a, b in zip(segs, segs[1:], strict=False):
        assert abs(a.end_s - b.start_s) < 1e-9  # contiguous


def test_segments_drop_short_regions_in_long_file():
    audio, _ = build([(1.0, 0), (3.0, 0.5), (1.0, 0), (6.0, 0.5), (1.0, 0), (1.0, 0.5), (1.0, 0)])
    segs = segment_audio(audio, SR, CFG)
    assert len(segs) == 1
    assert abs(segs[0].start_s - 5.0) <= FRAME and abs(segs[0].end_s - 11.0) <= FRAME


def test_short_file_all_speech_is_one_segment():
    audio, _ = build([(2.5, 0.5)])
    segs = segment_audio(audio, SR, CFG)
    assert len(segs) == 1 and abs(segs[0].duration_s - 2.5) <= FRAME


def test_short_file_below_short_min_gives_nothing():
    audio, _ = build([(0.2, 0), (1.5, 0.5), (0.2, 0)])
    assert segment_audio(audio, SR, CFG) == []


def test_silence_only_gives_nothing():
    audio, _ = build([(5.0, 0)], noise_db=-90)
    assert find_nonsilent(audio, SR, CFG) == []
    assert segment_audio(audio, SR, CFG) == []


def test_split_region_configurable():
    cfg = SegmentationConfig(min_s=2.0, max_s=3.0)
    pieces = split_region(Region(0.0, 10.0), cfg)
    assert len(pieces) == 4 and all(abs(p.duration_s - 2.5) < 1e-9 for p in pieces)
    # max_s < 2*min_s and no equal split fits: max_s pieces, centred
    cfg = SegmentationConfig(min_s=5.0, max_s=8.0)
    pieces = split_region(Region(0.0, 8.5), cfg)
    assert (
        len(pieces) == 1 and abs(pieces[0].duration_s - 8.0) < 1e-9 and abs(pieces[0].start_s - 0.25) < 1e-9
    )


def test_bad_config():
    with pytest.raises(InputError, match="min_s"):
        SegmentationConfig(min_s=9.0, max_s=8.0)
    with pytest.raises(InputError, match="method"):
        SegmentationConfig(method="webrtc")


@pytest.mark.parametrize("field", ["min_s", "max_s", "pad_s", "relative_db"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_settings_are_refused(field, value):
    """max_s=inf would pass `min_s <= max_s` and make one segment of a whole region."""
    with pytest.raises(
        InputError, match=rf"segmentation: settings must be finite numbers, got {field}={value}"
    ):
        SegmentationConfig(**{field: value})


def test_short_clip_just_at_min_s_with_edge_silence_is_one_segment():
    audio, _ = build([(0.3, 0), (3.6, 0.5), (0.3, 0)])  # 4.2 s file, 3.6 s of sound
    segs = segment_audio(audio, SR, CFG)
    assert len(segs) == 1 and abs(segs[0].start_s - 0.3) <= FRAME and abs(segs[0].end_s - 3.9) <= FRAME


def test_long_file_with_only_short_regions_gives_nothing():
    audio, _ = build([(1.0, 0), (3.0, 0.5), (2.0, 0), (3.0, 0.5), (1.0, 0)])  # 10 s > max_s
    assert segment_audio(audio, SR, CFG) == []


def test_silero_method():
    """silero-vad (optional) is wired in: it finds no speech in silence or in a steady tone."""
    try:
        import silero_vad  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="silero-vad package"):
            find_nonsilent(np.zeros(SR, np.float32), SR, SegmentationConfig(method="silero"))
        return
    cfg = SegmentationConfig(method="silero")
    assert find_nonsilent(np.zeros(3 * SR, np.float32), SR, cfg) == []
    t = np.arange(6 * SR) / SR
    assert segment_audio((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR, cfg) == []
    # 8 kHz / 44.1 kHz input is resampled for the model; regions stay within the file
    audio, _ = build([(1.0, 0), (4.0, 0.5), (1.0, 0)], sr=44100)
    for reg in find_nonsilent(audio, 44100, cfg):
        assert 0.0 <= reg.start_s < reg.end_s <= 6.0
