"""`upstep upscale clip.mp4 -o clip_x4.mp4` on tiny generated clips (16x16, a few frames, AAC audio)."""
import re
import numpy as np
import pytest
from PIL import Image

import upstep
from conftest import make_tiny_model
from upstep.cli import main
from upstep.model import save_model

av = pytest.importorskip("av", reason="video needs PyAV: pip install 'upstep[video]'")

FPS, SIZE = 10, 16


def make_clip(path, n=5, audio=True, options=None, bt709=False):
    """Moving colour ramps (H.264, yuv420p; untagged, or tagged and converted as BT.709) plus a
    440 Hz tone (AAC, 8 kHz mono)."""
    out = av.open(str(path), "w", options=options or {})
    v = out.add_stream("libx264", rate=FPS)
    v.width = v.height = SIZE
    v.pix_fmt = "yuv420p"
    if bt709:
        cc = v.codec_context
        cc.colorspace = cc.color_primaries = cc.color_trc = cc.color_range = 1
    a = out.add_stream("aac", rate=8000, layout="mono") if audio else None
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for k in range(n):
        img = np.stack([(xx * 16 + k * 20) % 256, (yy * 16) % 256, ((xx + yy) * 8 + k * 40) % 256], -1)
        frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
        if bt709:
            frame = frame.reformat(format="yuv420p", dst_colorspace=1)
        frame.pts = k
        out.mux(v.encode(frame))
    out.mux(v.encode(None))
    if a is not None:
        t = np.arange(8000 * n // FPS) / 8000
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for i in range(0, len(tone), 1024):
            af = av.AudioFrame.from_ndarray(tone[None, i:i + 1024], format="fltp", layout="mono")
            af.sample_rate, af.pts = 8000, i
            out.mux(a.encode(af))
        out.mux(a.encode(None))
    out.close()
    return path


def frames(path):
    with av.open(str(path)) as c:
        return [(f.to_ndarray(format="rgb24"), f.time) for f in c.decode(video=0)]


def audio_packets(path):
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None, []
        s = c.streams.audio[0]
        return s.codec_context.name, [bytes(p) for p in c.demux(s) if p.dts is not None]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_model(make_tiny_model(), tmp_path_factory.mktemp("video") / "model")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


def _run(src, dest, model_dir, *extra):
    return main(["upscale", str(src), "-o", str(dest), "--model", str(model_dir), "--no-progress", *extra])


def test_lossless_video_equals_the_image_path_frame_by_frame(tmp_path, clip, model_dir):
    """With a lossless RGB codec the comparison is exact: each output frame must be the image
    path's output for the decoded input frame, with the same seed (same noise) every frame."""
    dest = tmp_path / "clip_x4.mkv"
    assert _run(clip, dest, model_dir, "--video-codec", "ffv1") == 0
    src_frames, out_frames = frames(clip), frames(dest)
    assert len(out_frames) == len(src_frames) == 5
    # timing kept (a container may shift all streams together, e.g. mkv past AAC's negative priming pts)
    assert [t - out_frames[0][1] for _, t in out_frames] == pytest.approx([t for _, t in src_frames])
    up = upstep.load(model_dir, device="cpu")
    first = Image.fromarray(src_frames[0][0])
    # the check below can only see a per-frame seed if the seed changes the output
    assert not np.array_equal(np.asarray(up.upscale(first, seed=0)), np.asarray(up.upscale(first, seed=1)))
    for (lr, _), (sr, _) in zip(src_frames, out_frames):
        assert sr.shape == (SIZE * 4, SIZE * 4, 3)
        np.testing.assert_array_equal(sr, np.asarray(up.upscale(Image.fromarray(lr), seed=0)))
    codec, packets = audio_packets(dest)
    assert codec == "aac" and packets == audio_packets(clip)[1]  # audio copied bit for bit


@pytest.mark.parametrize("bt709", [False, True])
def test_default_mp4_keeps_frames_size_colours_and_audio(tmp_path, clip, model_dir, bt709):
    if bt709:
        clip = make_clip(tmp_path / "hd_tagged.mp4", bt709=True)
    dest = tmp_path / "clip_x4.mp4"
    assert _run(clip, dest, model_dir) == 0
    src_frames, out_frames = frames(clip), frames(dest)
    assert len(out_frames) == len(src_frames)
    with av.open(str(dest)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.name, v.width, v.height) == ("h264", SIZE * 4, SIZE * 4)
        assert v.average_rate == FPS
        cc = v.codec_context  # tagged with the matrix it was converted with: the input's, or BT.601
        assert (cc.colorspace, cc.color_primaries, cc.color_trc) == ((1, 1, 1) if bt709 else (5, 2, 2))
    assert audio_packets(dest) == audio_packets(clip)
    # H.264 at CRF 18: the image path's output through the same 4:2:0 conversion, within the
    # encoder's loss (measured 34-37 dB; a wrong frame scores < 16 dB, a BT.709 clip converted with
    # the BT.601 matrix 28 dB)
    up = upstep.load(model_dir, device="cpu")
    for (lr, _), (sr, _) in zip(src_frames, out_frames):
        ref = av.VideoFrame.from_ndarray(np.asarray(up.upscale(Image.fromarray(lr))), format="rgb24")
        ref = ref.reformat(format="yuv420p", dst_colorspace=1 if bt709 else 5).to_ndarray(format="rgb24")
        ref = ref.astype(float)
        psnr = 10 * np.log10(255**2 / np.mean((sr.astype(float) - ref) ** 2))
        assert psnr > 30, psnr


def test_video_without_audio(tmp_path, model_dir):
    src = make_clip(tmp_path / "silent.mp4", n=3, audio=False)
    assert _run(src, tmp_path / "out.mkv", model_dir) == 0
    assert len(frames(tmp_path / "out.mkv")) == 3 and audio_packets(tmp_path / "out.mkv")[0] is None


@pytest.mark.parametrize("kind", ["garbage", "cut_mp4", "cut_faststart_mp4", "cut_mkv"])
def test_bad_or_truncated_video_fails_clearly_and_leaves_nothing(tmp_path, model_dir, capsys, kind):
    src_dir, out_dir = tmp_path / "in", tmp_path / "out"
    src_dir.mkdir()
    out_dir.mkdir()
    if kind == "garbage":
        src = src_dir / "bad.mp4"
        src.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 8)
    else:
        name = "clip.mkv" if kind == "cut_mkv" else "clip.mp4"
        opts = {"movflags": "faststart"} if kind == "cut_faststart_mp4" else None
        full = make_clip(tmp_path / name, n=40 if kind == "cut_mkv" else 10, options=opts)
        data = full.read_bytes()
        src = src_dir / name
        src.write_bytes(data[: len(data) // 2])
    code = _run(src, out_dir / f"x4{src.suffix}", model_dir)
    err = capsys.readouterr().err
    assert code == 1
    assert str(src) in err and ("truncated" in err or "not a video" in err), err
    assert list(out_dir.iterdir()) == []  # neither the final name nor a temp file


@pytest.mark.parametrize("kind, says", [("empty", "empty file (0 bytes)"), ("missing", "input file not found")])
def test_empty_or_missing_video_says_so(tmp_path, model_dir, capsys, kind, says):
    from upstep.io import ImageReadError
    from upstep.video import upscale_video

    src = tmp_path / "in.mp4"
    if kind == "empty":
        src.write_bytes(b"")
    assert _run(src, tmp_path / "out.mp4", model_dir) == 1
    err = capsys.readouterr().err
    assert f"{src}: {says}" in err and err.count(str(src)) == 1
    assert not (tmp_path / "out.mp4").exists()
    with pytest.raises(ImageReadError, match=re.escape(says)):   # the library path says the same
        upscale_video(None, src, tmp_path / "out2.mp4")


def test_video_output_name_is_checked(tmp_path, clip, model_dir, capsys):
    assert _run(clip, tmp_path / "x.png", model_dir) == 1
    assert "video file name" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_video_frames_get_the_decompression_bomb_guard(tmp_path, clip, model_dir, capsys):
    assert _run(clip, tmp_path / "x.mp4", model_dir, "--max-pixels", "200") == 1
    assert "16x16 frames = 256 pixels exceed the limit of 200" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_auto_strength_is_picked_once_per_video(tmp_path, clip, monkeypatch):
    """default-x4's auto strength is read from the first frame and kept for every frame (a strength
    that changed from frame to frame would flicker): with the detector saying "camera-like", each
    output frame is the image path's output at 0.75, and the detector runs once."""
    import upstep.camera_detect as cd

    asked = []
    monkeypatch.setattr(cd, "camera_probability", lambda det, lr: asked.append(1) or 0.9)
    dest = tmp_path / "clip_auto.mkv"
    assert main(["upscale", str(clip), "-o", str(dest), "--no-progress", "--video-codec", "ffv1"]) == 0
    assert len(asked) == 1
    up = upstep.load("default-x4", device="cpu")
    for (lr, _), (sr, _) in zip(frames(clip), frames(dest)):
        np.testing.assert_array_equal(sr, np.asarray(up.upscale(Image.fromarray(lr), seed=0, strength=0.75)))
