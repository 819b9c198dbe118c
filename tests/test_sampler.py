"""Frame sampling: uniform indices, the decoder registry, each decoder, and every kind of bad file a user can
hand us."""
from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from vcap.extract import sampler
from vcap.extract.sampler import read_frames, read_windows, sample_indices, window_plan
from vcap.errors import VcapError

needs_decord = pytest.mark.skipif(sampler.decoder("decord").library is None, reason="decord is not installed")
needs_av = pytest.mark.skipif(sampler.decoder("pyav").library is None, reason="PyAV is not installed")


def test_the_decoder_registry_gives_the_auto_order_without_importing_a_codec_library():
    code = ("import sys; from vcap.extract.config import DECODERS; "
            "print(DECODERS, sorted(m for m in ('av', 'decord', 'cv2', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "('auto', 'pyav', 'decord', 'opencv') []"


@needs_decord
def test_a_decoder_module_named_after_its_library_uses_the_library():
    """extract/decoders/decord.py imports decord itself, not its own module."""
    library = sampler.decoder("decord").library
    assert library.__name__ == "decord" and hasattr(library, "VideoReader")


def test_indices_are_segment_centres_and_cover_the_video():
    assert sample_indices(100, 4).tolist() == [12, 37, 62, 87]
    assert sample_indices(80, 80).tolist() == list(range(80))


def test_a_short_video_repeats_frames_instead_of_giving_fewer():
    idx = sample_indices(3, 8)
    assert len(idx) == 8 and set(idx.tolist()) == {0, 1, 2} and np.all(np.diff(idx) >= 0)


@pytest.mark.parametrize("fourcc,ext", [("mp4v", "mp4"), ("XVID", "avi"), ("MJPG", "avi")])
@pytest.mark.parametrize("backend", ["opencv", pytest.param("decord", marks=needs_decord),
                                     pytest.param("pyav", marks=needs_av)])
def test_frames_are_rgb_at_the_fixed_size(make_video, fourcc, ext, backend):
    path = make_video(f"v.{ext}", frames=20, fourcc=fourcc)
    frames = read_frames(path, 8, size=64, backend=backend)
    assert frames.shape == (8, 64, 64, 3) and frames.dtype == np.uint8
    # the square is drawn in 255-base on a base background: frames must differ as it moves
    assert len({f.tobytes() for f in frames}) == 8


@needs_decord
@pytest.mark.parametrize("fourcc,ext", [("mp4v", "mp4"), ("XVID", "avi"), ("MJPG", "avi")])
def test_both_decoders_return_the_same_frames(make_video, fourcc, ext):
    path = make_video(f"v.{ext}", frames=30, fourcc=fourcc)
    a = read_frames(path, 10, size=96, backend="decord").astype(int)
    b = read_frames(path, 10, size=96, backend="opencv").astype(int)
    assert np.abs(a - b).mean() < 1.0


def test_short_video_gives_all_n_frames(make_video):
    frames = read_frames(make_video(frames=3), 8, size=32, backend="opencv")
    assert frames.shape[0] == 8


@pytest.mark.parametrize("backend", ["auto", "opencv", pytest.param("pyav", marks=needs_av)])
def test_bad_files_raise_one_clear_error_naming_the_file(tmp_path, make_video, backend):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.avi"
    text.write_text("not a video at all\n" * 50)
    good = make_video("cut.mp4", frames=30).read_bytes()
    cut_mp4 = tmp_path / "cut.mp4"
    cut_mp4.write_bytes(good[: len(good) // 2])  # the moov atom is at the end: unreadable
    cases = {empty: "empty", text: "cannot", cut_mp4: "cannot", tmp_path / "missing.mp4": "no such file"}
    for path, reason in cases.items():
        with pytest.raises(VcapError) as err:
            read_frames(path, 4, size=32, backend=backend)
        message = str(err.value)
        assert str(path) in message and reason in message and "\n" not in message


@pytest.mark.parametrize("backend", ["opencv", pytest.param("decord", marks=needs_decord),
                                     pytest.param("pyav", marks=needs_av)])
def test_truncated_avi_is_reported_not_silently_sampled(tmp_path, make_video, backend):
    """OpenCV reads a cut AVI without complaint, just fewer frames: the sampler must notice."""
    data = make_video("whole.avi", frames=60, fourcc="MJPG").read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VcapError, match="truncated"):
        read_frames(cut, 8, size=32, backend=backend)


def test_header_frame_count_that_lies_is_survived(shared_data):
    """tree.avi's header declares 444 frames; 68 decode (the rest are empty repeat packets)."""
    frames = read_frames(shared_data / "videos" / "tree.avi", 80, size=32, backend="opencv")
    assert frames.shape == (80, 32, 32, 3)


@needs_decord
def test_decoders_agree_on_real_clips_where_decord_random_access_does_not(shared_data):
    """decord's get_batch returns wrong frames on most of these AVIs; our sequential read must not."""
    clips = sorted((shared_data / "msvd" / "videos").glob("*.avi"))[:4] + [shared_data / "videos" / "Megamind.avi"]
    for clip in clips:
        a = read_frames(clip, 16, size=64, backend="decord").astype(int)
        b = read_frames(clip, 16, size=64, backend="opencv").astype(int)
        assert np.abs(a - b).mean() < 1.0, clip


@pytest.mark.parametrize("backend", ["opencv", pytest.param("pyav", marks=needs_av)])
def test_windows_arrive_in_batches_as_read_frames_plans_them(make_video, backend):
    """read_windows streams what read_frames gives for the same plan, a few windows at a time."""
    path = make_video("v.avi", frames=60, fps=12, fourcc="MJPG")
    batches = list(read_windows(path, 3, 1.0, size=32, backend=backend, frames_per_pass=6))
    assert [len(spans) for spans, _ in batches] == [2, 2, 1]
    spans = [span for taken, _ in batches for span in taken]
    assert spans == [(i, i + 1) for i in range(5)]
    planned: list = []
    want = read_frames(path, 3, size=32, backend=backend, plan=window_plan(12.0, 1.0, 3, planned))
    np.testing.assert_array_equal(np.concatenate([f for _, f in batches]).reshape(-1, 32, 32, 3), want)


def test_a_caller_that_stops_early_stops_the_decoding_thread(make_video):
    windows = read_windows(make_video("v.avi", frames=60, fps=12, fourcc="MJPG"), 3, 1.0, size=32,
                           frames_per_pass=3)
    next(windows)
    windows.close()  # returns: the thread decoding ahead ends with it
    assert not [t for t in threading.enumerate() if t.name == "vcap-decode"]


def test_an_image_is_refused_with_one_line_wherever_it_is_named(tmp_path, make_video):
    import cv2

    from vcap.extract.folder import find_videos

    image = tmp_path / "videos" / "still.png"
    make_video("clip.avi", fourcc="MJPG")
    cv2.imwrite(str(image), np.zeros((48, 64, 3), np.uint8))
    for read in (lambda: read_frames(image, 4, size=32), lambda: next(read_windows(image, 4, 1.0, size=32))):
        with pytest.raises(VcapError, match="an image, not a video") as err:
            read()
        assert str(image) in str(err.value) and "\n" not in str(err.value)
    assert [p.name for p in find_videos(tmp_path / "videos")] == ["clip.avi"]  # a folder's images are skipped


def test_a_bad_file_prints_nothing_but_vcaps_line(tmp_path, capfd):
    """decord's and OpenCV's C++ loggers write to the terminal themselves; none of it must show."""
    bad = tmp_path / "notes.avi"
    bad.write_text("not a video at all\n" * 50)
    with pytest.raises(VcapError):
        read_frames(bad, 4, size=32)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
