"""S10: attachments on local storage: uploads, downloads, ranges and the signed-URL check.

Four phases against ours, over keep-alive ``http.client`` connections to 127.0.0.1 (one per
client and server process), every response checked (status, JSON fields, bytes) and every
mismatch counted by kind in ``bad_responses``:

1. **Images**: ``s10_clients`` threads each ``POST /api/uploads`` ``s10_uploads`` JPEGs of
   ~1 MiB (random noise made with Pillow; a few pixels differ per upload, so no two uploads,
   and no two cleaned re-encodings, have the same bytes and nothing is deduplicated), the
   multipart body built in memory before the timed phase. The server decodes, re-encodes
   without metadata and thumbnails each. Latency per upload, uploads/s over the phase.
2. **A 50 MiB file** (random bytes behind a fixed ASCII prefix, so it sniffs as
   ``application/octet-stream``: stored as it is, no processing), ``s10_big_uploads`` times:
   MiB/s, and the serving process's VmRSS from ``/proc/<pid>/status`` sampled every 10 ms by a
   thread: idle (the median of 0.3 s of samples before the upload, the server idle) and the
   peak during the upload.
3. **Downloads of that file**: whole with the token (``s10_downloads`` times; MiB/s and peak
   RSS), then ``s10_ranges`` random 64 KiB ``Range`` requests (206, ``Content-Range`` and each
   body compared with the bytes sent).
4. **The signed-URL check**: a 1 KiB file fetched ``s10_small`` times through its signed URL
   (no header) and as many times with ``Authorization: Bearer`` (JWT, revocation check, the
   access query), alternating on one connection; p50/p99 of each and the difference.

The harness points ``ATTACHMENTS_DIR`` at a per-run directory it removes afterwards; the
upload and blob rows made here are deleted at the end (``db.remove_uploads``).
"""

from __future__ import annotations

import http.client
import io
import json
import random
import secrets
import statistics
import threading
import time

from . import db, procs
from .hist import Histogram
from .procs import Server
from .profiles import Profile

MIB = 1024 * 1024
IMAGE_BYTES = MIB  # the JPEGs' target size
IMAGE_QUALITY = 90  # as the server re-encodes
BIG_BYTES = 50 * MIB  # MAX_UPLOAD_BYTES' default: the largest upload there is
SMALL_BYTES = 1024
RANGE_BYTES = 64 * 1024
# Sniffing looks at the first bytes: a fixed text prefix keeps random bytes from looking like
# some format by chance (a few formats are known by two bytes).
PLAIN_PREFIX = b"bench S10 plain file, random bytes follow\n"
RSS_INTERVAL_S = 0.01
IDLE_SAMPLE_S = 0.3
TIMEOUT_S = 300


# --- request bodies -----------------------------------------------------------------------------


def multipart(data: bytes, *, filename: str, content_type: str) -> tuple[bytes, str]:
    """(body, Content-Type header) of a ``multipart/form-data`` request with one part ``file``."""
    while True:
        boundary = "bench-" + secrets.token_hex(16)
        if boundary.encode() not in data:
            break
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def noise_jpegs(count: int, *, seed: int, target: int = IMAGE_BYTES) -> list[bytes]:
    """``count`` JPEGs of about ``target`` bytes: one noise picture, sized so that its JPEG is
    ~``target``, with a few pixels set differently in each copy."""
    from PIL import Image

    rng = random.Random(seed)

    def encode(image) -> bytes:
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=IMAGE_QUALITY)
        return out.getvalue()

    def noise(width: int, height: int):
        return Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))

    # Noise compresses about as badly everywhere: measure bytes per pixel once, size for target.
    side = 256
    per_pixel = len(encode(noise(side, side))) / (side * side)
    side = max(16, int((target / per_pixel) ** 0.5))
    base = noise(side, side)
    out = []
    for _ in range(count):
        image = base.copy()
        for _ in range(8):
            xy = (rng.randrange(side), rng.randrange(side))
            image.putpixel(xy, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        out.append(encode(image))
    return out


def plain_bytes(size: int, rng: random.Random) -> bytes:
    return PLAIN_PREFIX + rng.randbytes(size - len(PLAIN_PREFIX))


# --- HTTP ---------------------------------------------------------------------------------------


class Client:
    """One keep-alive connection; a failed request closes it (the next one reconnects)."""

    def __init__(self, port: int, token: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
        self.auth = {"Authorization": f"Bearer {token}"}

    def request(
        self, method: str, path: str, *, body: bytes | None = None, headers: dict | None = None, auth: bool = True
    ) -> tuple[int, http.client.HTTPResponse, bytes, float]:
        """(status, response, body, seconds from the request to the last body byte)."""
        all_headers = {**(self.auth if auth else {}), **(headers or {})}
        t0 = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=all_headers)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            raise
        return response.status, response, data, time.perf_counter() - t0

    def close(self) -> None:
        self.conn.close()


class Problems:
    """Counts of what went wrong, by kind (thread-safe)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()

    def add(self, text: str) -> None:
        with self.lock:
            self.counts[text] = self.counts.get(text, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class RssSampler:
    """VmRSS of one process every ``interval`` seconds, in a thread, while ``with`` lasts."""

    def __init__(self, pid: int, interval: float = RSS_INTERVAL_S):
        self.pid, self.interval = pid, interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _run(self) -> None:
        while True:
            try:
                self.samples.append(procs.memory_kib(self.pid)["VmRSS"])
            except (OSError, KeyError):
                return
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        try:  # one more after the response: whatever the request left behind
            self.samples.append(procs.memory_kib(self.pid)["VmRSS"])
        except (OSError, KeyError):
            pass

    @property
    def peak_kib(self) -> int:
        return max(self.samples, default=0)


def idle_rss_kib(pid: int) -> int:
    """The median VmRSS over IDLE_SAMPLE_S (the caller made sure the server is idle)."""
    samples = []
    deadline = time.perf_counter() + IDLE_SAMPLE_S
    while time.perf_counter() < deadline:
        samples.append(procs.memory_kib(pid)["VmRSS"])
        time.sleep(RSS_INTERVAL_S)
    return int(statistics.median(samples))


def mib(kib: float) -> float:
    return round(kib / 1024, 1)


def check_upload(
    status: int, body: bytes, *, kind: str, size: int | None, problems: Problems, what: str = "upload"
) -> dict | None:
    """The upload's JSON if the answer is a 201 with what this upload must give, else None (and
    a problem counted under ``what``)."""
    if status != 201:
        problems.add(f"{what}: HTTP {status}: {body[:120]!r}")
        return None
    try:
        data = json.loads(body)
        ok = (
            data["kind"] == kind
            and isinstance(data["id"], int)
            and data["url"].startswith(f"/api/files/{data['id']}?")
            and (size is None or data["size"] == size)
        )
        if kind == "image":
            ok = ok and data["mime"] == "image/jpeg" and data["thumbnail"] and data["thumbnail_url"]
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        problems.add(f"{what}: an answer that is not the {kind} sent: {body[:160]!r}")
        return None
    return data


# --- the phases ---------------------------------------------------------------------------------


def image_uploads(server: Server, token: str, profile: Profile, problems: Problems, made: list[int]) -> dict:
    clients = profile.s10_clients
    per_client = profile.s10_uploads
    t_make = time.perf_counter()
    # One warm-up upload per client (not recorded), then the timed ones.
    images = noise_jpegs(clients * (per_client + 1), seed=secrets.randbits(32))
    bodies = [multipart(img, filename=f"noise-{i}.jpg", content_type="image/jpeg") for i, img in enumerate(images)]
    sizes = [len(img) for img in images]
    del images  # the bodies hold the bytes
    make_s = time.perf_counter() - t_make
    hists = [Histogram() for _ in range(clients)]
    answers: list[list[dict]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    errors: list[str] = []

    def client(k: int) -> None:
        c = Client(server.port_for(k), token)
        try:
            mine = bodies[k * (per_client + 1) : (k + 1) * (per_client + 1)]
            for i, (body, ctype) in enumerate(mine):
                if i == 1:
                    barrier.wait()
                try:
                    status, _, data, elapsed = c.request(
                        "POST", "/api/uploads", body=body, headers={"Content-Type": ctype}
                    )
                except (OSError, http.client.HTTPException) as exc:
                    problems.add(f"upload: {type(exc).__name__}")
                    continue
                answer = check_upload(status, data, kind="image", size=None, problems=problems)
                if answer is not None:
                    answers[k].append(answer)
                    if i:  # the timed ones: stored uploads only (failures are counted)
                        hists[k].record_s(elapsed)
        except threading.BrokenBarrierError:
            pass
        except Exception as exc:  # the thread must not die silently
            errors.append(f"{type(exc).__name__}: {exc}")
            barrier.abort()
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(k,), name=f"s10-upload-{k}") for k in range(clients)]
    for t in threads:
        t.start()
    try:
        barrier.wait()  # every client has made its warm-up upload
    except threading.BrokenBarrierError:
        pass
    meter = server.meter()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    usage = meter.stop().as_dict()
    hist = Histogram()
    for h in hists:
        hist.merge(h)
    found = [a for per in answers for a in per]
    made.extend(a["id"] for a in found)
    shas = [a.get("sha256") for a in found]
    if len(set(shas)) != len(shas):
        problems.add("upload: two images stored as the same content (deduplicated)")
    thumb = None
    if found:
        # One thumbnail, through its signed URL: a WebP.
        c = Client(server.port_for(0), token)
        try:
            status, _, data, _ = c.request("GET", found[0]["thumbnail_url"], auth=False)
            thumb = len(data)
            if status != 200 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
                problems.add(f"thumbnail: HTTP {status}, not a WebP: {data[:40]!r}")
        finally:
            c.close()
    out = {
        "clients": clients,
        "uploads_each": per_client,
        "image_bytes": {"min": min(sizes), "max": max(sizes)},
        "image_side": found[0].get("width") if found else None,
        "images_made_s": round(make_s, 2),
        "uploads": hist.count,
        "stored": len(found),
        "wall_s": round(wall, 3),
        "uploads_per_s": round(hist.count / wall, 2) if wall > 0 else None,
        "latency": hist.summary(),
        "thumbnail_bytes": thumb,
        "server": usage,
    }
    if errors:
        out["thread_errors"] = errors
        for e in errors:
            problems.add(f"upload thread: {e[:120]}")
    return out


def big_uploads(
    server: Server, token: str, profile: Profile, problems: Problems, made: list[int]
) -> tuple[dict, tuple[int, bytes] | None]:
    """The 50 MiB uploads, one at a time, with the serving process's RSS; returns the phase and
    (upload id, bytes) of the first stored one for the downloads."""
    rng = random.Random(secrets.randbits(32))
    pid = server.pids[0]
    c = Client(server.ports[0], token)
    runs = []
    first = None
    hist = Histogram()
    meter = server.meter()
    try:
        for i in range(profile.s10_big_uploads):
            data = plain_bytes(BIG_BYTES, rng)
            body, ctype = multipart(data, filename=f"random-{i}.bin", content_type="application/octet-stream")
            server.wait_idle(below_pct=5.0, window_s=0.3, timeout_s=10.0)
            idle = idle_rss_kib(pid)
            with RssSampler(pid) as rss:
                try:
                    status, _, answer, elapsed = c.request(
                        "POST", "/api/uploads", body=body, headers={"Content-Type": ctype}
                    )
                except (OSError, http.client.HTTPException) as exc:
                    problems.add(f"big upload: {type(exc).__name__}")
                    continue
            del body
            hist.record_s(elapsed)
            upload = check_upload(status, answer, kind="file", size=BIG_BYTES, problems=problems, what="big upload")
            if upload is not None:
                made.append(upload["id"])
                if first is None:
                    first = (upload["id"], data)
            runs.append(
                {
                    "seconds": round(elapsed, 3),
                    "mib_per_s": round(BIG_BYTES / MIB / elapsed, 1),
                    "rss_idle_mib": mib(idle),
                    "rss_peak_mib": mib(rss.peak_kib),
                    "rss_growth_mib": mib(rss.peak_kib - idle),
                    "rss_after_mib": mib(rss.samples[-1]) if rss.samples else None,
                    "rss_samples": len(rss.samples),
                    "stored": upload is not None,
                }
            )
    finally:
        c.close()
    usage = meter.stop().as_dict()
    out: dict = {"bytes": BIG_BYTES, "uploads": runs, "latency": hist.summary(), "server": usage}
    if runs:
        speeds = sorted(r["mib_per_s"] for r in runs)
        out["mib_per_s"] = speeds[len(speeds) // 2]  # the median upload
        worst = max(runs, key=lambda r: r["rss_growth_mib"])
        out["rss_idle_mib"] = worst["rss_idle_mib"]
        out["rss_peak_mib"] = worst["rss_peak_mib"]
        out["rss_growth_mib"] = worst["rss_growth_mib"]  # the largest over the uploads
    return out, first


def downloads(
    server: Server, token: str, profile: Profile, problems: Problems, upload_id: int, data: bytes
) -> tuple[dict, dict]:
    """The whole file with the token, then random 64 KiB ranges of it."""
    pid = server.pids[0]
    c = Client(server.ports[0], token)
    path = f"/api/files/{upload_id}"
    whole = Histogram()
    speeds = []
    peak = 0
    try:
        server.wait_idle(below_pct=5.0, window_s=0.3, timeout_s=10.0)
        idle = idle_rss_kib(pid)
        meter = server.meter()
        for _ in range(profile.s10_downloads):
            with RssSampler(pid) as rss:
                try:
                    status, response, body, elapsed = c.request("GET", path)
                except (OSError, http.client.HTTPException) as exc:
                    problems.add(f"download: {type(exc).__name__}")
                    continue
            peak = max(peak, rss.peak_kib)
            if status != 200 or response.getheader("Content-Length") != str(len(data)):
                problems.add(f"download: HTTP {status}, Content-Length {response.getheader('Content-Length')}")
            elif body != data:
                problems.add(f"download: {len(body)} bytes, not the {len(data)} uploaded")
            else:
                whole.record_s(elapsed)
                speeds.append(len(data) / MIB / elapsed)
            del body
        whole_usage = meter.stop().as_dict()

        rng = random.Random(upload_id)
        hist = Histogram()
        meter = server.meter()
        t0 = time.perf_counter()
        for _ in range(profile.s10_ranges):
            start = rng.randrange(len(data) - RANGE_BYTES + 1)
            stop = start + RANGE_BYTES - 1
            try:
                status, response, body, elapsed = c.request("GET", path, headers={"Range": f"bytes={start}-{stop}"})
            except (OSError, http.client.HTTPException) as exc:
                problems.add(f"range: {type(exc).__name__}")
                continue
            hist.record_s(elapsed)
            if status != 206:
                problems.add(f"range: HTTP {status}: {body[:80]!r}")
            elif response.getheader("Content-Range") != f"bytes {start}-{stop}/{len(data)}":
                problems.add(f"range: Content-Range {response.getheader('Content-Range')!r}")
            elif body != data[start : stop + 1]:
                problems.add("range: not the bytes of that range")
        wall = time.perf_counter() - t0
        range_usage = meter.stop().as_dict()
    finally:
        c.close()
    speeds.sort()
    whole_out = {
        "downloads": whole.count,
        "bytes": len(data),
        "mib_per_s": round(speeds[len(speeds) // 2], 1) if speeds else None,  # the median download
        "mib_per_s_best": round(speeds[-1], 1) if speeds else None,
        "latency": whole.summary(),
        "rss_idle_mib": mib(idle),
        "rss_peak_mib": mib(peak),
        "rss_growth_mib": mib(peak - idle) if peak else None,
        "server": whole_usage,
    }
    range_out = {
        "requests": hist.count,
        "range_bytes": RANGE_BYTES,
        "wall_s": round(wall, 3),
        "requests_per_s": round(hist.count / wall, 1) if wall > 0 else None,
        "latency": hist.summary(),
        "server": range_usage,
    }
    return whole_out, range_out


def signed_vs_token(server: Server, token: str, profile: Profile, problems: Problems, made: list[int]) -> dict:
    """A 1 KiB file through its signed URL and with the Authorization header, alternating."""
    data = plain_bytes(SMALL_BYTES, random.Random(secrets.randbits(32)))
    body, ctype = multipart(data, filename="small.bin", content_type="application/octet-stream")
    c = Client(server.ports[0], token)
    hists = {"signed": Histogram(), "token": Histogram()}
    try:
        status, _, answer, _ = c.request("POST", "/api/uploads", body=body, headers={"Content-Type": ctype})
        upload = check_upload(status, answer, kind="file", size=SMALL_BYTES, problems=problems, what="small upload")
        if upload is None:
            return {"error": "the 1 KiB upload failed"}
        made.append(upload["id"])
        ways = {
            "signed": (upload["url"], False),  # ?expires=..&signature=.., no header
            "token": (f"/api/files/{upload['id']}", True),
        }
        meter = server.meter()
        for i in range(2 * (10 + profile.s10_small)):  # 10 warm-up requests of each first
            way = ("signed", "token")[i % 2]
            path, auth = ways[way]
            try:
                status, _, got, elapsed = c.request("GET", path, auth=auth)
            except (OSError, http.client.HTTPException) as exc:
                problems.add(f"small {way}: {type(exc).__name__}")
                continue
            if status != 200 or got != data:
                problems.add(f"small {way}: HTTP {status}, {len(got)} bytes: {got[:80]!r}")
            elif i >= 20:
                hists[way].record_s(elapsed)
        usage = meter.stop().as_dict()
    finally:
        c.close()
    signed, tok = hists["signed"].summary(), hists["token"].summary()

    def diff(key: str) -> float | None:
        if signed.get(key) is None or tok.get(key) is None:
            return None
        return round(tok[key] - signed[key], 3)

    return {
        "bytes": SMALL_BYTES,
        "requests_each": profile.s10_small,
        "signed": signed,
        "token": tok,
        "token_minus_signed_ms": {"p50": diff("p50_ms"), "p99": diff("p99_ms"), "mean": diff("mean_ms")},
        "server": usage,
    }


def run(server: Server, *, token: str, profile: Profile, pg_base: str, bench_db: str) -> dict:
    problems = Problems()
    made: list[int] = []  # upload ids, for the cleanup
    out: dict = {}

    def phase(name: str, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:  # recorded; the other phases still run
            problems.add(f"{name}: phase failed")
            return {"error": f"{type(exc).__name__}: {exc}"[:300]}

    meter = server.meter()
    try:
        out["images"] = phase("images", image_uploads, server, token, profile, problems, made)
        # The big file right after (the server idle before each upload, for its RSS).
        big = phase("big upload", big_uploads, server, token, profile, problems, made)
        out["big_upload"], first = big if isinstance(big, tuple) else (big, None)
        if first is None:
            out["download"] = out["ranges"] = {"error": "no 50 MiB upload to download"}
        else:
            got = phase("downloads", downloads, server, token, profile, problems, *first)
            out["download"], out["ranges"] = got if isinstance(got, tuple) else (got, got)
        del first, big
        out["small"] = phase("small", signed_vs_token, server, token, profile, problems, made)
    finally:
        out["server"] = meter.stop().as_dict()
        try:
            out["rows_removed"] = db.remove_uploads(pg_base, bench_db, made)
        except Exception as exc:
            out["rows_removed"] = f"failed: {exc!r}"[:200]
    out["bad_responses"] = problems.counts
    out["failures"] = problems.total
    out["checks"] = {
        "attachments: every response as expected (status, JSON, bytes), no upload deduplicated": (
            "ok"
            if not problems.total
            else "VIOLATED: " + "; ".join(f"{n}x {text}" for text, n in problems.counts.items())[:600]
        )
    }
    return out
