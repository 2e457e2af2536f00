"""Video in and out with PyAV (FFmpeg): decode to RGB frames with their timestamps, encode an MP4 preview.

    from msma.video import open_video
    with open_video("clip.mp4", max_side=1280) as video:
        print(video.info)                       # fps, size, frame count, variable frame rate ...
        for frame in video:                      # VideoFrame(index, time, image RGB uint8)
            ...

Errors are `VideoError` with a sentence a user can act on (not a file, not a video, no video stream, no frame
decodable); decoding that fails part-way raises `VideoDecodeError` after the good frames were yielded, with the
index it stopped at, so callers can keep what they have.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["VideoDecodeError", "VideoError", "VideoFrame", "VideoInfo", "VideoReader", "VideoWriter", "open_video"]

log = logging.getLogger(__name__)

# Frame intervals that differ from the median by more than this fraction mark a variable-frame-rate clip.
VFR_TOLERANCE = 0.1


class VideoError(ValueError):
    """The file cannot be used as a video (missing, not a video, no video stream, nothing decodable)."""


class VideoDecodeError(VideoError):
    """Decoding stopped part-way through; ``frames_read`` good frames came before the failure."""

    def __init__(self, message: str, frames_read: int) -> None:
        super().__init__(message)
        self.frames_read = frames_read


@dataclass
class VideoFrame:
    index: int  # decode order, from 0
    time: float  # seconds from the first frame (presentation timestamp)
    image: np.ndarray  # (H, W, 3) uint8 RGB, possibly downscaled (see VideoInfo.scale)


@dataclass
class VideoInfo:
    path: str
    width: int  # source size
    height: int
    fps: float  # average frame rate declared by the container (0 when unknown)
    frame_count: int  # declared by the container; 0 when unknown (then only decoding tells)
    duration: float  # seconds, 0 when unknown
    codec: str
    scale: float = 1.0  # decoded frame pixels per source pixel (< 1 when downscaled to max_side)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class VideoReader:
    """Iterate the frames of one video stream (use `open_video`)."""

    def __init__(self, path: str | os.PathLike, max_side: int | None = None) -> None:
        import av

        self.path = Path(path)
        if not self.path.exists():
            raise VideoError(f"{self.path}: no such file")
        if not self.path.is_file():
            raise VideoError(f"{self.path} is not a file")
        if self.path.stat().st_size == 0:
            raise VideoError(f"{self.path} is empty (0 bytes)")
        try:
            self.container = av.open(str(self.path), mode="r")
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as error:
            raise VideoError(f"{self.path} cannot be opened as a video: {_reason(error)}") from None
        streams = self.container.streams.video
        if not streams:
            self.container.close()
            raise VideoError(f"{self.path} has no video stream")
        self.stream = streams[0]
        self.stream.thread_type = "AUTO"
        ctx = self.stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0:
            self.container.close()
            raise VideoError(f"{self.path}: the video stream has no frame size (damaged header?)")
        rate = self.stream.average_rate or self.stream.guessed_rate
        duration = 0.0
        if self.stream.duration is not None and self.stream.time_base is not None:
            duration = float(self.stream.duration * self.stream.time_base)
        elif self.container.duration:
            duration = self.container.duration / 1_000_000
        scale = 1.0
        if max_side is not None and max(width, height) > max_side:
            scale = max_side / max(width, height)
        self.info = VideoInfo(str(self.path), width, height, float(rate) if rate else 0.0, int(self.stream.frames or 0),
                              duration, ctx.name or "?", scale)
        self.max_side = max_side

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    def __iter__(self) -> Iterator[VideoFrame]:
        import av

        index = 0
        start: float | None = None
        last_time = -np.inf
        fallback_dt = 1.0 / self.info.fps if self.info.fps > 0 else 1.0 / 30.0
        size = None
        if self.info.scale < 1.0:
            size = (max(2, round(self.info.width * self.info.scale)), max(2, round(self.info.height * self.info.scale)))
        try:
            for frame in self.container.decode(self.stream):
                if frame.time is None:  # no timestamp: continue at the nominal rate
                    t = last_time + fallback_dt if index else 0.0
                else:
                    if start is None:
                        start = float(frame.time)
                    t = float(frame.time) - start
                if t <= last_time:  # repeated / out-of-order timestamps: keep time strictly increasing
                    t = last_time + 1e-3
                last_time = t
                if size is not None:
                    image = frame.to_ndarray(format="rgb24", width=size[0], height=size[1],
                                             interpolation="AREA")
                else:
                    image = frame.to_ndarray(format="rgb24")
                yield VideoFrame(index, float(t), np.ascontiguousarray(image))
                index += 1
        except (av.error.FFmpegError, ValueError) as error:
            if index == 0:
                raise VideoError(f"{self.path}: no frame could be decoded ({_reason(error)})") from None
            raise VideoDecodeError(f"{self.path}: decoding stopped after {index} frames ({_reason(error)})",
                                   index) from None
        if index == 0:
            raise VideoError(f"{self.path} contains no video frames")


def open_video(path: str | os.PathLike, max_side: int | None = None) -> VideoReader:
    """Open a video for reading; frames larger than ``max_side`` pixels are downscaled while decoding."""
    return VideoReader(path, max_side=max_side)


def frame_rate_report(times: np.ndarray) -> tuple[float, bool]:
    """(median frame rate, variable?) from frame timestamps (seconds)."""
    times = np.asarray(times, np.float64)
    if len(times) < 2:
        return 0.0, False
    dt = np.diff(times)
    median = float(np.median(dt))
    if median <= 0:
        return 0.0, False
    variable = bool(np.mean(np.abs(dt - median) > VFR_TOLERANCE * median) > 0.05)
    return 1.0 / median, variable


def _reason(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]


class VideoWriter:
    """H.264 MP4 (yuv420p, plays in browsers) from RGB frames; sizes are rounded down to even numbers."""

    def __init__(self, path: str | os.PathLike, fps: float, width: int, height: int, crf: int = 23) -> None:
        """``write(image, time=t)`` stamps frames with their own times (variable frame rate); otherwise frames
        follow each other at ``fps``."""
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.width, self.height = max(2, width // 2 * 2), max(2, height // 2 * 2)
        self.container = av.open(str(self.path), mode="w")
        rate = Fraction(fps).limit_denominator(1001) if fps and fps > 0 else Fraction(30)
        try:
            self.stream = self.container.add_stream("libx264", rate=rate)
            self.stream.options = {"crf": str(crf), "preset": "veryfast"}
        except (av.error.FFmpegError, ValueError):
            self.stream = self.container.add_stream("mpeg4", rate=rate)
        self.stream.width, self.stream.height = self.width, self.height
        self.stream.pix_fmt = "yuv420p"
        self.time_base = Fraction(1, 90000)
        self.stream.time_base = self.time_base
        self.rate = rate
        self.count = 0

    def write(self, image: np.ndarray, time: float | None = None) -> None:
        import av

        image = np.ascontiguousarray(image[: self.height, : self.width, :3], dtype=np.uint8)
        if image.shape[:2] != (self.height, self.width):
            import cv2

            image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        t = self.count / self.rate if time is None else Fraction(time).limit_denominator(90000)
        frame.pts = int(round(t / self.time_base))
        frame.time_base = self.time_base
        self.count += 1
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
