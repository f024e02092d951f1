"""S9 (issue 15): scale-out. 1:1 traffic among many users spread over several server processes.

Run it with several processes: ``python -m bench run --procs 4 --servers ours --scenarios S9``.
Sockets go to the processes round-robin (a pair's two users land on two different processes).
For each step (a steady open-loop rate) it reports, per process, the CPU it spent and what its
channel layer counted (``/metrics`` of that process):

* ``received``: envelopes it took off Redis and parsed;
* ``unrouted``: of those, envelopes naming no group with a local socket -- pure waste;
* ``published``: events its senders published, and the envelopes (PUBLISHes) they took.

With routing per process (``CHANNEL_LAYER_ROUTING``, the default) a process parses only the
envelopes of its own sockets: ``unrouted`` stays ~0 and the envelopes parsed per process are
~1/N of the events published. With the single fan-out channel (``CHANNEL_LAYER_ROUTING=off``)
every process parses every event. CPU per message summed over the processes, set against the
1-process figure of the same command, says whether adding processes adds work to all of them.
"""

from __future__ import annotations

import http.client
import re

from ..client import close_all
from ..procs import Server, cpu_seconds
from .common import Context, alternating_sends, connect_summary, open_pairs, run_step, settle

COUNTERS = {
    "received": "messenger_layer_envelopes_received_total",
    "unrouted": "messenger_layer_envelopes_unrouted_total",
    "events_published": "messenger_layer_events_published_total",
    "envelopes_published": "messenger_layer_envelopes_published_total",
}
_SAMPLE = re.compile(r"^(\w+)(?:\{[^}]*\})? (\S+)$")


def _counters(port: int) -> dict[str, float]:
    """This process's layer counters (summed over labels), 0 where absent."""
    out = dict.fromkeys(COUNTERS, 0.0)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
        conn.close()
    except OSError:
        return out
    names = {name: key for key, name in COUNTERS.items()}
    for line in body.splitlines():
        match = _SAMPLE.match(line)
        if match and match.group(1) in names:
            out[names[match.group(1)]] += float(match.group(2))
    return out


async def s9_scaleout(ctx: Context, server: Server) -> dict:
    p = ctx.profile
    connected, links = await open_pairs(ctx, server, ctx.fixture["pairs"][: p.s9_pairs])
    result: dict = {"connect": connect_summary(connected), "processes": len(server.ports), "steps": []}
    if not links:
        result["error"] = "no pair connected"
        await close_all(connected.conns)
        return result
    fire_for = alternating_sends(ctx, links, "s9")

    await run_step(ctx, server, connected.conns, rate=100, duration_s=1.0, fire_for=fire_for("warm"), recipients=1)
    await settle(server)
    for rate in p.s9_rates:
        before = [(_counters(port), cpu_seconds(pid)) for port, pid in zip(server.ports, server.pids, strict=True)]
        step, _ = await run_step(
            ctx, server, connected.conns, rate=rate, duration_s=p.s9_step_s, fire_for=fire_for(str(rate)), recipients=1
        )
        after = [(_counters(port), cpu_seconds(pid)) for port, pid in zip(server.ports, server.pids, strict=True)]
        per_process = []
        for (c0, cpu0), (c1, cpu1) in zip(before, after, strict=True):
            per_process.append(
                {
                    **{key: c1[key] - c0[key] for key in COUNTERS},
                    "cpu_s": round(cpu1 - cpu0, 3),
                }
            )
        events = sum(proc["events_published"] for proc in per_process)
        received = [proc["received"] for proc in per_process]
        step["per_process"] = per_process
        step["events_published"] = events
        step["envelopes_published"] = sum(proc["envelopes_published"] for proc in per_process)
        step["received_per_process_over_events"] = (
            round(sum(received) / len(received) / events, 3) if events and received else None
        )
        step["unrouted"] = sum(proc["unrouted"] for proc in per_process)
        cpu = sum(proc["cpu_s"] for proc in per_process)
        step["cpu_ms_per_message"] = round(1000 * cpu / step["sent"], 3) if step["sent"] else None
        result["steps"].append(step)
        await settle(server)
    await close_all(connected.conns)
    return result
