"""The markdown table (summary + per-step details) from a run's results dict."""

from __future__ import annotations

from .profiles import (
    S1_FLOOR_RATIO,
    S1_P99_MS,
    S1_TARGET_RATE,
    S2_P99_MS,
    S2_TARGET_DELIVERIES,
    S3_TARGET_CONNECTS,
    S3_TARGET_KIB,
    S4_P99_MS,
    S5_MAX_ROWS_PER_ACK,
    S5_P99_MS,
    S6_MAX_OVERHEAD_PCT,
    S7_P99_MS,
    S8_P99_MS,
    S10_RSS_GROWTH_MIB,
)


def _ms(value) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _lat(summary: dict | None) -> list[str]:
    summary = summary or {}
    return [
        _ms(summary.get("p50_ms")),
        _ms(summary.get("p99_ms")),
        _ms(summary.get("p999_ms")),
    ]


def _srv(server: dict | None) -> list[str]:
    server = server or {}
    cpu = server.get("cpu_pct")
    rss = server.get("rss_mib")
    return [
        f"{cpu:.0f} %" if cpu is not None else "–",
        f"{rss:.0f} MiB" if rss is not None else "–",
    ]


def _met(is_ours: bool, ok: bool | None) -> str:
    if not is_ours or ok is None:
        return ""
    return "yes" if ok else "**NO**"


def _loss(step: dict | None) -> str:
    if not step:
        return "–"
    lost = step.get("lost_deliveries", 0) + step.get("missing_acks", 0)
    errors = sum((step.get("errors") or {}).values())
    text = str(lost)
    if lost and "never_delivered" in step:
        text += f" ({step['never_delivered'] + step.get('never_acked', 0)} never)"
    if errors:
        text += f" (+{errors} err)"
    return text


def _best_step(steps: list[dict]) -> dict | None:
    passed = [s for s in steps if s.get("passed")]
    return passed[-1] if passed else (steps[0] if steps else None)


def summary_rows(results: dict) -> list[list[str]]:
    rows: list[list[str]] = []
    labels = results["servers"]
    for scenario, per_server in results["scenarios"].items():
        for name, r in per_server.items():
            label = labels.get(name, name)
            ours = name == "ours"
            if "error" in r and len(r) <= 3:
                rows.append(
                    [
                        scenario,
                        label,
                        f"error: {r['error']}",
                        "–",
                        "–",
                        "–",
                        "–",
                        "–",
                        "–",
                        "",
                        "",
                    ]
                )
                continue
            if scenario == "S1":
                step = _best_step(r.get("steps", []))
                best = r.get("max_sustained_rate", 0)
                figure = f"max sustained **{best}** msgs/s" + ("" if best else " (none passed; 1st step shown)")
                floor = (per_server.get("floor") or {}).get("max_sustained_rate")
                if floor:
                    ok = best >= S1_FLOOR_RATIO * floor
                    target = f">= {S1_FLOOR_RATIO}x the floor ({S1_FLOOR_RATIO * floor:.0f}/s), p99 <= {S1_P99_MS:.0f} ms, 0 loss"
                    if ours:
                        figure += f", **{best / floor:.2f}x the floor**"
                else:
                    ok = best >= S1_TARGET_RATE
                    target = f">= {S1_TARGET_RATE}/s, p99 <= {S1_P99_MS:.0f} ms, 0 loss"
                rows.append(
                    [
                        scenario,
                        label,
                        figure,
                        *_lat(step and step["delivery"]),
                        _loss(step),
                        *_srv(step and step["server"]),
                        target,
                        _met(ours, ok),
                    ]
                )
            elif scenario == "S2":
                slow = r.get("slow") or {}
                p99 = (slow.get("last_recipient") or {}).get("p99_ms")
                rows.append(
                    [
                        scenario,
                        label,
                        f"last of {r.get('group')} @ 1 msg/s",
                        *_lat(slow.get("last_recipient")),
                        _loss(slow),
                        *_srv(slow.get("server")),
                        f"p99 <= {S2_P99_MS:.0f} ms",
                        _met(
                            ours,
                            p99 is not None and p99 <= S2_P99_MS and _loss(slow) == "0",
                        ),
                    ]
                )
                best = r.get("max_sustained_deliveries_per_s", 0)
                step = _best_step(r.get("steps", []))
                rows.append(
                    [
                        scenario,
                        label,
                        f"sustained **{best:.0f}** deliveries/s",
                        *_lat(step and step["last_recipient"]),
                        _loss(step),
                        *_srv(step and step["server"]),
                        f">= {S2_TARGET_DELIVERIES}/s",
                        _met(ours, best >= S2_TARGET_DELIVERIES),
                    ]
                )
            elif scenario == "S3":
                kib = r.get("kib_per_socket")
                cps = (r.get("connect") or {}).get("connects_per_s", 0)
                fails = sum(((r.get("connect") or {}).get("failures") or {}).values())
                figure = f"**{kib}** KiB/socket, **{cps:.0f}** connects/s ({(r.get('connect') or {}).get('sockets')} sockets)"
                rows.append(
                    [
                        scenario,
                        label,
                        figure,
                        *_lat((r.get("connect") or {}).get("handshake")),
                        str(fails),
                        *_srv(
                            {
                                **(r.get("connect_phase_server") or {}),
                                "rss_mib": r.get("rss_after_mib"),
                            }
                        ),
                        f"<= {S3_TARGET_KIB:.0f} KiB, >= {S3_TARGET_CONNECTS}/s",
                        _met(
                            ours,
                            kib is not None and kib <= S3_TARGET_KIB and cps >= S3_TARGET_CONNECTS,
                        ),
                    ]
                )
            elif scenario == "S4":
                for qname, q in (r.get("queries") or {}).items():
                    p99 = (q.get("latency") or {}).get("p99_ms")
                    bad = sum((q.get("bad_responses") or {}).values())
                    rows.append(
                        [
                            scenario,
                            label,
                            f"`{qname}` (n={(q.get('latency') or {}).get('count', 0)})",
                            *_lat(q.get("latency")),
                            str(bad),
                            *_srv(r.get("server")),
                            f"p99 <= {S4_P99_MS:.0f} ms",
                            _met(ours, p99 is not None and p99 <= S4_P99_MS and not bad),
                        ]
                    )
            elif scenario == "S5":
                p99 = (r.get("ack_latency") or {}).get("p99_ms")
                rpa = r.get("rows_per_ack")
                lost = r.get("missing_acks", 0)
                rows.append(
                    [
                        scenario,
                        label,
                        f"{r.get('acks')} acks @ {r.get('offered_rate')}/s in {r.get('group')}; **{rpa}** rows/ack",
                        *_lat(r.get("ack_latency")),
                        str(lost),
                        *_srv(r.get("server")),
                        f"p99 <= {S5_P99_MS:.0f} ms, O(1) rows/ack",
                        _met(
                            ours,
                            p99 is not None
                            and p99 <= S5_P99_MS
                            and rpa is not None
                            and rpa <= S5_MAX_ROWS_PER_ACK
                            and not lost,
                        ),
                    ]
                )
            elif scenario == "S6":
                u, d = r.get("unique") or {}, r.get("duplicate") or {}
                over = r.get("overhead_pct")
                figure = (
                    f"dedup overhead **{over} %**: {u.get('acks_per_s')} → {d.get('acks_per_s')} sends/s "
                    f"({u.get('messages_per_s')} → {d.get('messages_per_s')} stored/s)"
                )
                rows.append(
                    [
                        scenario,
                        label,
                        figure,
                        *_lat(d.get("ack_latency")),
                        str(r.get("bad_pairs", 0)),
                        *_srv(d.get("server")),
                        f"<= {S6_MAX_OVERHEAD_PCT:.0f} %",
                        _met(
                            ours,
                            over is not None and over <= S6_MAX_OVERHEAD_PCT and not r.get("bad_pairs"),
                        ),
                    ]
                )
            elif scenario == "S7":
                p99 = (r.get("ack_latency") or {}).get("p99_ms")
                lost = r.get("missing_acks", 0) + r.get("lost_deliveries", 0)
                errors = sum((r.get("errors") or {}).values())
                exact = r.get("exact")
                stopped = f" (sends stopped: {r.get('aborted')})" if r.get("aborted") else ""
                figure = (
                    f"{r.get('acks')} of {r.get('scheduled')} reaction acks @ {r.get('offered_rate')}/s over "
                    f"{r.get('chats')} chats{stopped}; "
                    f"counts **{'exact' if exact else 'NOT exact' if exact is not None else '?'}**"
                )
                rows.append(
                    [
                        scenario,
                        label,
                        figure,
                        *_lat(r.get("ack_latency")),
                        _loss(
                            {
                                "missing_acks": r.get("missing_acks", 0),
                                "lost_deliveries": r.get("lost_deliveries", 0),
                                "errors": r.get("errors"),
                            }
                        ),
                        *_srv(r.get("server")),
                        f"ack p99 <= {S7_P99_MS:.0f} ms, exact counts",
                        _met(ours, p99 is not None and p99 <= S7_P99_MS and not lost and not errors and bool(exact)),
                    ]
                )
            elif scenario == "S8":
                p99 = (r.get("page_latency") or {}).get("p99_ms")
                bad = sum((r.get("bad_responses") or {}).values())
                exact = r.get("exact")
                rows.append(
                    [
                        scenario,
                        label,
                        f"catch-up on {r.get('changes')} changes: **{r.get('pages')}** pages in "
                        f"**{r.get('total_s')}** s (median of {len(r.get('passes') or [])}; n={(r.get('page_latency') or {}).get('count', 0)} pages); "
                        f"{'exact' if exact else 'NOT exact'}",
                        *_lat(r.get("page_latency")),
                        str(bad),
                        *_srv(r.get("server")),
                        f"p99 per page <= {S8_P99_MS:.0f} ms",
                        _met(ours, p99 is not None and p99 <= S8_P99_MS and not bad and bool(exact)),
                    ]
                )
            elif scenario == "S9":
                for st in r.get("steps", []):
                    ratio = st.get("received_per_process_over_events")
                    rows.append(
                        [
                            scenario,
                            label,
                            f"{r.get('processes')} processes, {st['offered_rate']} msgs/s: envelopes parsed per process "
                            f"= **{ratio}** x events published, {st.get('unrouted', 0):.0f} unrouted, "
                            f"{_ms(st.get('cpu_ms_per_message'))} ms CPU/msg (all processes)",
                            *_lat(st.get("delivery")),
                            _loss(st),
                            "–",
                            "–",
                            "unrouted ~ 0; CPU/msg not above 1 process",
                            "",
                        ]
                    )
            elif scenario == "S10":
                rows += _s10_rows(scenario, label, r)
    return rows


def _fails(r: dict, *prefixes: str) -> str:
    """Failures counted for one phase of S10 (by the prefix of their kind)."""
    n = sum(v for k, v in (r.get("bad_responses") or {}).items() if k.startswith(prefixes))
    return str(n)


def _s10_rows(scenario: str, label: str, r: dict) -> list[list[str]]:
    rows = []

    def row(phase: dict | None, figure: str, latency: dict | None, fails: str, target: str = "", met: str = ""):
        phase = phase or {}
        if "error" in phase:
            figure += f" (error: {phase['error'][:120]})"
        rows.append([scenario, label, figure, *_lat(latency), fails, *_srv(phase.get("server")), target, met])

    img = r.get("images") or {}
    sizes = img.get("image_bytes") or {}
    row(
        img,
        f"upload ~1 MiB JPEG ({sizes.get('min', 0) / 1048576:.2f}–{sizes.get('max', 0) / 1048576:.2f} MiB, "
        f"{img.get('image_side')} px square), {img.get('clients')} clients × {img.get('uploads_each')}: "
        f"**{img.get('uploads_per_s')}** uploads/s (n={(img.get('latency') or {}).get('count', 0)})",
        img.get("latency"),
        _fails(r, "upload", "thumbnail", "images"),
    )
    big = r.get("big_upload") or {}
    growth = big.get("rss_growth_mib")
    row(
        big,
        f"upload 50 MiB file: **{big.get('mib_per_s')}** MiB/s (median of {len(big.get('uploads') or [])}); "
        f"RSS idle {big.get('rss_idle_mib')} → peak {big.get('rss_peak_mib')} MiB (**+{growth}** MiB)",
        big.get("latency"),
        _fails(r, "big upload"),
        f"peak RSS <= idle + {S10_RSS_GROWTH_MIB:.0f} MiB (streamed)",
        "" if growth is None else "yes" if growth <= S10_RSS_GROWTH_MIB else "**NO**",
    )
    down = r.get("download") or {}
    row(
        down,
        f"download 50 MiB with the token: **{down.get('mib_per_s')}** MiB/s (median of {down.get('downloads')}, "
        f"best {down.get('mib_per_s_best')}); RSS +{down.get('rss_growth_mib')} MiB",
        down.get("latency"),
        _fails(r, "download"),
    )
    ranges = r.get("ranges") or {}
    row(
        ranges,
        f"`Range` 64 KiB of the 50 MiB file: **{ranges.get('requests_per_s')}** requests/s (n={ranges.get('requests')})",
        ranges.get("latency"),
        _fails(r, "range"),
    )
    small = r.get("small") or {}
    d = small.get("token_minus_signed_ms") or {}
    row(
        small,
        f"1 KiB file by signed URL (n={(small.get('signed') or {}).get('count', 0)})",
        small.get("signed"),
        _fails(r, "small signed", "small upload", "small:"),
    )
    row(
        small,
        f"1 KiB file with `Authorization` (n={(small.get('token') or {}).get('count', 0)}): "
        f"**{_signed(d.get('p50'))}** ms p50, {_signed(d.get('p99'))} ms p99 vs. the signed URL",
        small.get("token"),
        _fails(r, "small token"),
    )
    return rows


def _signed(value) -> str:
    return "–" if value is None else f"{value:+.2f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(results: dict) -> str:
    meta = results["meta"]
    out = [
        f"## Bench run `{meta['run_id']}` ({meta['profile']}, {meta['procs']} server process(es) for ours and the floor)",
        "",
        (
            f"{meta['started']}, commit `{meta['commit']}` (app source digest `{meta.get('source_digest')}`), {meta['cpus']} CPUs, load average at start {meta['loadavg']}, "
            f"took {meta.get('duration_s', 0):.0f} s (setup {meta.get('setup_s', 0):.0f} s). "
            "Latencies in ms, open loop, from the scheduled send time. CPU and RSS: the server's own processes."
        ),
        "",
        _table(
            [
                "Scenario",
                "Server",
                "Result",
                "p50",
                "p99",
                "p99.9",
                "Loss",
                "Srv CPU",
                "Srv RSS",
                "Target (ours)",
                "Met",
            ],
            summary_rows(results),
        ),
    ]
    try:
        load = float(meta["loadavg"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        load = 0.0
    if load > (meta.get("cpus") or 1):
        out += [
            "",
            (
                f"**Warning:** the machine was busy when the run started (load average "
                f"{load:.1f} on {meta.get('cpus')} CPUs); figures from this run are not comparable."
            ),
        ]
    labels = results["servers"]
    s1 = results["scenarios"].get("S1") or {}
    if s1:
        rows = []
        for name, r in s1.items():
            for st in r.get("steps", []):
                rows.append(
                    [
                        labels.get(name, name),
                        st["offered_rate"],
                        f"{st['sent']}/{st['scheduled']}",
                        st["delivered"],
                        _loss(st),
                        *_lat(st["delivery"]),
                        _ms((st["ack"] or {}).get("p99_ms")),
                        _ms((st.get("send_lag") or {}).get("p99_ms")),
                        *_srv(st["server"]),
                        _ms((st["server"] or {}).get("cpu_ms_per_message")),
                        f"{st['client_cpu_pct']:.0f} %",
                        ("pass" if st.get("passed") else "fail")
                        + (" (retry)" if st.get("attempt", 1) > 1 else "")
                        + (f": {st['aborted']}" if st.get("aborted") else ""),
                    ]
                )
        out += [
            "",
            "### S1 steps (1:1, delivery latency)",
            "",
            _table(
                [
                    "Server",
                    "msgs/s",
                    "sent",
                    "delivered",
                    "loss",
                    "p50",
                    "p99",
                    "p99.9",
                    "ack p99",
                    "send lag p99",
                    "Srv CPU",
                    "Srv RSS",
                    "CPU ms/msg",
                    "client CPU",
                    "",
                ],
                rows,
            ),
        ]
    s2 = results["scenarios"].get("S2") or {}
    if s2:
        rows = []
        for name, r in s2.items():
            for st in ([r["slow"]] if r.get("slow") else []) + r.get("steps", []):
                rows.append(
                    [
                        labels.get(name, name),
                        f"{st['offered_rate']:.2f}",
                        st.get("offered_deliveries_per_s", "1 msg/s"),
                        st["delivered_per_s"],
                        _loss(st),
                        *_lat(st["last_recipient"]),
                        _ms((st["delivery"] or {}).get("p50_ms")),
                        *_srv(st["server"]),
                        f"{st['client_cpu_pct']:.0f} %",
                        ""
                        if "passed" not in st
                        else "pass"
                        if st["passed"]
                        else f"fail{': ' + st['aborted'] if st.get('aborted') else ''}",
                    ]
                )
        out += [
            "",
            "### S2 steps (group fan-out; latency of the last recipient)",
            "",
            _table(
                [
                    "Server",
                    "msgs/s",
                    "offered deliv/s",
                    "delivered/s",
                    "loss",
                    "p50",
                    "p99",
                    "p99.9",
                    "any-recipient p50",
                    "Srv CPU",
                    "Srv RSS",
                    "client CPU",
                    "",
                ],
                rows,
            ),
        ]
    s10 = (results["scenarios"].get("S10") or {}).get("ours") or {}
    big = s10.get("big_upload") or {}
    if big.get("uploads"):
        down = s10.get("download") or {}
        rows = [
            [
                f"upload {i + 1}",
                u["seconds"],
                u["mib_per_s"],
                u["rss_idle_mib"],
                u["rss_peak_mib"],
                f"+{u['rss_growth_mib']}",
                u["rss_after_mib"],
                u["rss_samples"],
            ]
            for i, u in enumerate(big["uploads"])
        ]
        if down.get("downloads"):
            rows.append(
                [
                    f"{down['downloads']} downloads",
                    _ms((down.get("latency") or {}).get("p50_ms")) + " ms (p50)",
                    down.get("mib_per_s"),
                    down.get("rss_idle_mib"),
                    down.get("rss_peak_mib"),
                    f"+{down.get('rss_growth_mib')}",
                    "–",
                    "–",
                ]
            )
        out += [
            "",
            "### S10 the 50 MiB file (RSS of the serving process, MiB)",
            "",
            _table(["", "seconds", "MiB/s", "RSS idle", "RSS peak", "peak − idle", "RSS after", "samples"], rows),
        ]
    checks = results.get("checks") or {}
    if checks:
        out += ["", "### Checks", ""] + [f"- {k}: {v}" for k, v in checks.items()]
    problems = results.get("log_problems") or {}
    if any(problems.values()):
        out += [
            "",
            "### Server log lines that look like errors (first 10 per server)",
            "",
        ]
        for name, lines in problems.items():
            for line in lines[:10]:
                out.append(f"- {labels.get(name, name)}: `{line}`")
    if meta.get("notes"):
        out += ["", "### Notes", ""] + [f"- {n}" for n in meta["notes"]]
    return "\n".join(out) + "\n"
