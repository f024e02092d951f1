"""Files made for the tests, in memory: photos with EXIF (GPS, orientation), a decompression
bomb, HTML and SVG, and short recordings encoded by PyAV."""

from __future__ import annotations

import io
import math
import struct
import tempfile
import zlib
from pathlib import Path

from PIL import Image

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def jpeg_with_gps(width: int = 64, height: int = 32, *, orientation: int = 6) -> bytes:
    """A JPEG whose EXIF holds a GPS position and an orientation (6: rotate 90° to view)."""
    image = Image.new("RGB", (width, height), (200, 30, 30))
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[0x010F] = "CameraMaker"
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (55.0, 45.0, 21.0), 3: "E", 4: (37.0, 37.0, 4.0)})
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif.tobytes(), quality=90)
    return out.getvalue()


def png(width: int = 40, height: int = 20) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height), (0, 120, 255, 200)).save(out, format="PNG")
    return out.getvalue()


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG that claims 10 000 000 000 pixels: its IHDR rewritten, its CRC fixed."""
    data = bytearray(png(8, 8))
    # IHDR: 8 signature bytes, 4 length, 4 type, then width and height.
    data[16:24] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF
    data[29:33] = struct.pack(">I", crc)
    return bytes(data)


HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script><circle r="5"/></svg>'


def tone(seconds: float = 1.5, *, container: str = "webm", codec: str = "libopus", rate: int = 48_000) -> bytes:
    """A 440 Hz tone of ``seconds``, louder in its second half, encoded by PyAV (FFmpeg)."""
    import av

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"tone.{container}"
        with av.open(str(path), "w", format=container) as output:
            stream = output.add_stream(codec, rate=rate)
            stream.layout = "mono"
            frame_size = 960
            total = int(seconds * rate)
            for start in range(0, total, frame_size):
                count = min(frame_size, total - start)
                samples = bytearray()
                for i in range(count):
                    n = start + i
                    level = 0.2 if n < total / 2 else 0.9
                    samples += struct.pack("<h", int(level * 32767 * math.sin(2 * math.pi * 440 * n / rate)))
                frame = av.AudioFrame(format="s16", layout="mono", samples=count)
                frame.planes[0].update(bytes(samples) + bytes(frame.planes[0].buffer_size - len(samples)))
                frame.sample_rate = rate
                frame.pts = start
                for packet in stream.encode(frame):
                    output.mux(packet)
            for packet in stream.encode(None):
                output.mux(packet)
        return path.read_bytes()


def video(seconds: float = 1.0, *, width: int = 64, height: int = 48, rate: int = 10, container: str = "mp4") -> bytes:
    """A short clip of flat grey frames, by PyAV: MP4 with MPEG-4 part 2 (FFmpeg's own encoder),
    or ``container="webm"`` with VP8 (libvpx), which Chromium plays."""
    import av

    codec = {"mp4": "mpeg4", "webm": "libvpx"}[container]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"clip.{container}"
        with av.open(str(path), "w", format=container) as output:
            stream = output.add_stream(codec, rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for n in range(int(seconds * rate)):
                frame = av.VideoFrame(width, height, "yuv420p")
                for plane in frame.planes:
                    plane.update(bytes([96 + n]) * plane.buffer_size)
                frame.pts = n
                for packet in stream.encode(frame):
                    output.mux(packet)
            for packet in stream.encode(None):
                output.mux(packet)
        return path.read_bytes()
