"""What an uploaded file is, from its bytes alone, and what can be derived from it.

The type comes from the content (the ``filetype`` library's signatures), never from the name
or the header the client sent. Images are decoded by Pillow, which refuses decompression bombs
(``MAX_IMAGE_PIXELS``); they are re-encoded without their metadata (EXIF, GPS, XMP, comments)
after their orientation is applied, and get a thumbnail. Audio and video are probed by PyAV
(FFmpeg's demuxers and decoders, in its wheel: no system package), which gives the duration,
the video's size and first frame, and the amplitudes of a voice message's waveform.
"""

from __future__ import annotations

import io
import math
import tempfile
import warnings
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import filetype
from django.conf import settings
from PIL import Image, ImageOps, UnidentifiedImageError

# Images Pillow decodes and browsers show: everything else is a file.
IMAGE_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP", "image/gif": "GIF"}
VIDEO_MIMES = {"video/mp4", "video/webm", "video/quicktime", "video/x-matroska"}
AUDIO_MIMES = {
    "audio/mpeg",
    "audio/ogg",
    "audio/mp4",
    "audio/x-m4a",
    "audio/m4a",
    "audio/webm",
    "audio/x-wav",
    "audio/wav",
    "audio/x-flac",
    "audio/flac",
    "audio/aac",
}
GENERIC = "application/octet-stream"
THUMBNAIL_SIDE = 320
WAVEFORM_BUCKETS = 64
WAVEFORM_MAX = 31
WAVEFORM_MAX_SECONDS = 30 * 60  # longer recordings get no waveform (decoding cost)


class Refused(Exception):
    """The file cannot be taken: ``code`` is the error code (``unsupported_type``, ``too_large``)."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass
class Inspected:
    kind: str  # image | video | audio | voice | file
    mime: str
    path: Path  # the bytes to store: the upload itself, or its metadata-free re-encoding
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    waveform: list[int] | None = None
    thumbnail: bytes | None = None  # WebP
    temporary: list[Path] = field(default_factory=list)  # files made here, for the caller to remove


def sniff(path: Path) -> str:
    """The MIME type the first bytes say (application/octet-stream when unknown)."""
    guess = filetype.guess(str(path))
    return guess.mime if guess else GENERIC


def inspect(path: Path, *, voice: bool = False) -> Inspected:
    """What the file at ``path`` is. ``voice``: the client says it is a voice message, which it
    must then be (audio). Raises :class:`Refused`."""
    mime = sniff(path)
    if voice:
        probed = _probe_av(path, waveform=True)
        if probed is None or not probed.audio or probed.video:
            raise Refused("unsupported_type", "A voice message must be an audio file (Opus, Vorbis, MP3, AAC).")
        return Inspected("voice", _audio_mime(mime), path, duration=probed.duration, waveform=probed.waveform)
    if mime in IMAGE_FORMATS:
        return _image(path, mime)
    if mime in VIDEO_MIMES or mime in AUDIO_MIMES:
        probed = _probe_av(path, waveform=False)
        if probed is not None and probed.video:
            return Inspected(
                "video", mime, path, width=probed.width, height=probed.height,
                duration=probed.duration, thumbnail=probed.poster,
            )  # fmt: skip
        if probed is not None and probed.audio:
            return Inspected("audio", _audio_mime(mime), path, duration=probed.duration)
    return Inspected("file", mime, path)


def _audio_mime(mime: str) -> str:
    # A WebM or Matroska file with sound only (what browsers record) is audio.
    return {"video/webm": "audio/webm", "video/x-matroska": "audio/x-matroska"}.get(mime, mime)


# --- images -----------------------------------------------------------------------------------


def _open_image(source) -> Image.Image:
    """Pillow's open, with its decompression-bomb warning turned into a refusal."""
    Image.MAX_IMAGE_PIXELS = settings.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(source)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise Refused("too_large", f"The image has more than {settings.MAX_IMAGE_PIXELS} pixels.") from None


def _image(path: Path, mime: str) -> Inspected:
    try:
        with _open_image(path) as probe:
            probe.verify()  # structure and checksums, without decoding the pixels
        image = _open_image(path)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except Refused:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        raise Refused("unsupported_type", f"The image cannot be decoded ({type(exc).__name__}).") from None
    with image:
        animated = getattr(image, "is_animated", False)
        # Pixels as they are meant to be seen (EXIF orientation applied), then written anew
        # without any metadata: EXIF (GPS included), XMP and comments are not copied.
        upright = image if animated else ImageOps.exif_transpose(image)
        clean = Path(tempfile.mkstemp(prefix="upload-clean-", dir=settings.FILE_UPLOAD_TEMP_DIR)[1])
        options = {"icc_profile": image.info.get("icc_profile")} if image.info.get("icc_profile") else {}
        fmt = IMAGE_FORMATS[mime]
        if animated:
            upright.save(clean, format=fmt, save_all=True, **options)
        elif fmt == "JPEG":
            upright.convert("RGB").save(clean, format=fmt, quality=90, **options)
        else:
            upright.save(clean, format=fmt, **options)
        width, height = upright.size
        thumbnail = _thumbnail(upright)
    return Inspected("image", mime, clean, width=width, height=height, thumbnail=thumbnail, temporary=[clean])


def _thumbnail(image: Image.Image) -> bytes:
    frame = image.copy()
    frame.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    if frame.mode not in ("RGB", "RGBA"):
        frame = frame.convert("RGBA" if "A" in frame.getbands() or frame.mode == "P" else "RGB")
    out = io.BytesIO()
    frame.save(out, format="WEBP", quality=80)
    return out.getvalue()


# --- audio and video ----------------------------------------------------------------------------


@dataclass
class _Probed:
    audio: bool
    video: bool
    duration: float | None
    width: int | None = None
    height: int | None = None
    poster: bytes | None = None
    waveform: list[int] | None = None


def _probe_av(path: Path, *, waveform: bool) -> _Probed | None:
    import av  # imported here: loading FFmpeg's libraries is only needed for audio and video

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            audio = next(iter(container.streams.audio), None)
            video = next(iter(container.streams.video), None)
            if audio is None and video is None:
                return None
            probed = _Probed(audio=audio is not None, video=video is not None, duration=None)
            if container.duration:
                probed.duration = container.duration / av.time_base
            if video is not None:
                probed.width, probed.height = video.codec_context.width or None, video.codec_context.height or None
                probed.poster = _poster(container, video)
            elif waveform:
                probed.duration, probed.waveform = _waveform(container, audio, probed.duration)
            if probed.duration is None:
                probed.duration = _duration_by_packets(path)
            return probed
    except av.FFmpegError:
        return None


def _poster(container, stream) -> bytes | None:
    import av

    try:
        for frame in container.decode(stream):
            return _thumbnail(frame.to_image())
    except av.FFmpegError:
        return None
    return None


def _waveform(container, stream, duration: float | None) -> tuple[float | None, list[int] | None]:
    """The peak amplitude of each of 64 equal slices of the recording, 0..31, and the duration
    counted from the decoded samples (recordings made by browsers often carry none)."""
    import av

    if duration is not None and duration > WAVEFORM_MAX_SECONDS:
        return duration, None
    rate = 4000  # plenty for 64 peaks
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    samples = array("h")
    try:
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                samples.frombytes(bytes(out.planes[0])[: out.samples * 2])
            if len(samples) > WAVEFORM_MAX_SECONDS * rate:
                return duration, None
        for out in resampler.resample(None):
            samples.frombytes(bytes(out.planes[0])[: out.samples * 2])
    except av.FFmpegError:
        return duration, None
    if not samples:
        return duration, None
    counted = len(samples) / rate
    step = len(samples) / WAVEFORM_BUCKETS
    peaks = []
    for bucket in range(WAVEFORM_BUCKETS):
        part = samples[int(bucket * step) : max(int((bucket + 1) * step), int(bucket * step) + 1)]
        peaks.append(max(max(part), -min(part)) if part else 0)
    top = max(peaks) or 1
    levels = [min(WAVEFORM_MAX, math.ceil(peak * WAVEFORM_MAX / top)) for peak in peaks]
    return (duration if duration is not None else counted), levels


def _duration_by_packets(path: Path) -> float | None:
    """The end of the last packet: for streams whose header carries no duration."""
    import av

    end = None
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            for packet in container.demux():
                if packet.pts is None or packet.time_base is None:
                    continue
                stop = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                end = stop if end is None else max(end, stop)
    except av.FFmpegError:
        return None
    return end
