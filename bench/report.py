"""Turns the bench's runs into medians, ratios, the checks the issue asks
for, a markdown report, JSON and a plot.

Servers are of two kinds (servers.py): tcp (postern-tcp, hitch, haproxy-tcp)
and http (postern-http, haproxy-http). Every table groups its rows by kind,
and every ratio compares postern of a kind with a peer of the same kind."""

import os
import re
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

MEDIAN_FIELDS = ("rate", "cpu_us", "server_util", "p50_ms", "p99_ms", "resumed_frac",
                 "client_busy", "client_cpu", "req_per_cpu_s", "kib_per_conn", "base_rss_kib",
                 "rss_kib", "fds", "base_fds", "ok", "others_on_server_cpu", "hs_p50_ms",
                 "resp_p50_ms", "resp_p99_ms", "early_frac", "early_sent_frac",
                 "before_fin_frac", "round_trips", "delay_ms")

SCENARIO_ORDER = ("full", "resumed", "early", "rtt-resumed", "rtt-early", "h1-keepalive",
                  "h2-keepalive", "idle-rss")
KIND_ORDER = ("tcp", "http")
KIND_TITLE = {"tcp": "tcp mode", "http": "http mode"}


def _median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def _key(r):
    return (r["scenario"], r["cert"], r["conc"], r["server"])


def kind_of(row):
    return row.get("kind", "tcp")


def aggregate(runs, server_order):
    groups = {}
    for r in runs:
        groups.setdefault(_key(r), []).append(r)
    rows = []
    for key, rs in groups.items():
        row = {"scenario": key[0], "cert": key[1], "conc": key[2], "server": key[3],
               "kind": rs[0].get("kind", "tcp"), "reps": len(rs),
               "errors": sum(r.get("errors", 0) for r in rs),
               "failures": sorted({r["failure"] for r in rs if r.get("failure")})}
        for f in MEDIAN_FIELDS:
            row[f] = _median([r.get(f) for r in rs])
        row["client_saturated"] = sum(bool(r.get("client_saturated")) for r in rs) * 2 > len(rs)
        errs = {}
        for r in rs:
            for k, v in (r.get("errors_by_kind") or {}).items():
                errs[k] = errs.get(k, 0) + v
        if errs:
            row["errors_by_kind"] = errs
        rows.append(row)

    def order(row):
        s = SCENARIO_ORDER.index(row["scenario"]) if row["scenario"] in SCENARIO_ORDER else 99
        k = KIND_ORDER.index(kind_of(row)) if kind_of(row) in KIND_ORDER else 9
        srv = server_order.index(row["server"]) if row["server"] in server_order else 99
        return (s, k, row["cert"] != "ecdsa", row["conc"], srv)

    rows.sort(key=order)
    # postern's figure over each peer's, in the same scenario and kind.
    by_point = {}
    for row in rows:
        by_point.setdefault((row["scenario"], row["cert"], row["conc"], kind_of(row)), {})[
            row["server"]] = row
    for point in by_point.values():
        p = next((row for name, row in point.items() if is_postern(name)), None)
        if p is None:
            continue
        for name, row in point.items():
            if row is p:
                continue
            row["ratio_cpu"] = _ratio(p.get("cpu_us"), row.get("cpu_us"))
            row["ratio_rate"] = _ratio(p.get("rate"), row.get("rate"))
            row["ratio_rss"] = _ratio(p.get("kib_per_conn"), row.get("kib_per_conn"))
    return rows


def is_postern(server):
    """postern in any mode ("postern-tcp", "postern-http")."""
    return server.startswith("postern")


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def _find(rows, scenario, cert, conc, server):
    for r in rows:
        if (r["scenario"], r["cert"], r["conc"], r["server"]) == (scenario, cert, conc, server):
            return r
    return None


def _kinds_in(rows):
    return [k for k in KIND_ORDER if any(kind_of(r) == k for r in rows)]


def _postern_name(rows, kind):
    return next((r["server"] for r in rows if kind_of(r) == kind and is_postern(r["server"])),
                f"postern-{kind}")


def _peer_names(rows, kind):
    seen = []
    for r in rows:
        if kind_of(r) == kind and not is_postern(r["server"]) and r["server"] not in seen:
            seen.append(r["server"])
    return seen


def _check_full(rows, settings, kind):
    """postern's CPU per full ECDSA handshake at most half the best peer's
    of its kind."""
    pname = _postern_name(rows, kind)
    peers = _peer_names(rows, kind)
    figure = (f"server CPU per full ECDSA handshake, {KIND_TITLE[kind]}: {pname} / best of "
              f"{', '.join(peers) if peers else 'its peers'}")
    if not peers:
        return {"figure": figure, "target": "<= 0.50", "measured": "no peers in this run",
                "verdict": "n/a"}
    per = []
    for conc in settings["conc"]:
        p = _find(rows, "full", "ecdsa", conc, pname)
        best = None
        for name in peers:
            r = _find(rows, "full", "ecdsa", conc, name)
            if r and r.get("cpu_us") and (best is None or r["cpu_us"] < best["cpu_us"]):
                best = r
        if p and p.get("cpu_us") and best:
            per.append((conc, p["cpu_us"], best["server"], best["cpu_us"],
                        p["cpu_us"] / best["cpu_us"]))
    if not per:
        return None
    worst = max(x[4] for x in per)
    text = "; ".join(f"c={c}: {pu:.0f} us vs {bn} {bu:.0f} us = {r:.2f}"
                     for c, pu, bn, bu, r in per)
    return {"figure": figure, "target": "<= 0.50", "measured": text,
            "verdict": "holds" if worst <= 0.5 else "falls short"}


def _check_resumed(rows, settings, kind):
    pname = _postern_name(rows, kind)
    parts, ok = [], True
    for cert in settings["resumed_certs"]:
        for conc in settings["conc"]:
            f = _find(rows, "full", cert, conc, pname)
            r = _find(rows, "resumed", cert, conc, pname)
            if not (f and r and f.get("cpu_us") and r.get("cpu_us")):
                continue
            frac = r.get("resumed_frac") or 0
            good = r["cpu_us"] < f["cpu_us"] and frac >= 0.99
            ok = ok and good
            parts.append(f"{cert} c={conc}: {r['cpu_us']:.0f} vs {f['cpu_us']:.0f} us "
                         f"({r['cpu_us'] / f['cpu_us']:.2f}), {frac * 100:.1f}% resumed")
    if not parts:
        return None
    return {"figure": f"{pname}: server CPU per resumed handshake / per full one",
            "target": "< 1, with >= 99% of handshakes resumed", "measured": "; ".join(parts),
            "verdict": "holds" if ok else "falls short"}


def _rt(row):
    """Round trips a request waited for, from an rtt-* row (rounded to 0.1)."""
    return None if row is None or row.get("round_trips") is None else row["round_trips"]


def _check_early(rows, settings, kind):
    """0-RTT requests answered in one round trip: with the emulated round
    trip, the early request's response should come after about one round
    trip (before the client's Finished has even left), one less than a
    resumed request's two."""
    pname = _postern_name(rows, kind)
    figure = f"0-RTT requests answered in one round trip ({pname})"
    target = ("early data accepted; response ~1 round trip after the ClientHello (before the "
              "client's Finished), one less than resumed")
    e = _find(rows, "rtt-early", settings["certs"][0], settings.get("rtt_conc"), pname)
    r = _find(rows, "rtt-resumed", settings["certs"][0], settings.get("rtt_conc"), pname)
    rates = [x for x in rows if x["scenario"] == "early" and x["server"] == pname]
    if e is None and not rates:
        return None
    parts = []
    acc = [x.get("early_frac") for x in rates if x.get("early_frac") is not None]
    if e is not None and e.get("early_frac") is not None:
        acc.append(e["early_frac"])
    if acc:
        parts.append(f"early data accepted: {min(acc) * 100:.1f}%")
    verdict = "n/a"
    if e is not None and r is not None and _rt(e) is not None and _rt(r) is not None:
        d = settings.get("rtt_ms")
        parts.append(f"with an emulated {d:g} ms round trip, response p50: resumed "
                     f"{r['resp_p50_ms']:.1f} ms ({_rt(r):.1f} round trips), 0-RTT "
                     f"{e['resp_p50_ms']:.1f} ms ({_rt(e):.1f} round trips); responses that "
                     f"came before the client's Finished left: "
                     f"{(e.get('before_fin_frac') or 0) * 100:.0f}%")
        peers = [x for x in rows if x["scenario"] == "rtt-early" and kind_of(x) == kind
                 and not is_postern(x["server"]) and _rt(x) is not None]
        for x in peers:
            parts.append(f"{x['server']} 0-RTT: {_rt(x):.1f} round trips")
        one_rt = (_rt(e) < 1.5 and (e.get("before_fin_frac") or 0) >= 0.99
                  and (min(acc) if acc else 0) >= 0.99)
        verdict = "holds" if one_rt else "falls short"
    for conc in settings.get("early_conc", []):
        x = _find(rows, "early", settings["certs"][0], conc, pname)
        y = _find(rows, "resumed", settings["certs"][0], conc, pname)
        if x and y and x.get("p50_ms") and y.get("p50_ms"):
            parts.append(f"no emulation, c={conc}: p50 {x['p50_ms']:.2f} ms (0-RTT) vs "
                         f"{y['p50_ms']:.2f} ms (resumed)")
    return {"figure": figure, "target": target, "measured": "; ".join(parts),
            "verdict": verdict}


def _check_h2(rows):
    """h2 keep-alive requests per server-CPU-second at least HAProxy's, in
    http mode; tcp mode for reference."""
    h2 = [r for r in rows if r["scenario"] == "h2-keepalive"]

    def pick(kind, want):
        return next((r for r in h2 if kind_of(r) == kind and want(r["server"])
                     and r.get("req_per_cpu_s")), None)

    figure = "h2 keep-alive requests per server-CPU-second, postern-http / haproxy-http"
    hp, hh = pick("http", is_postern), pick("http", lambda n: n.startswith("haproxy"))
    tp, th = pick("tcp", is_postern), pick("tcp", lambda n: n.startswith("haproxy"))
    ref = ""
    if tp and th:
        ref = (f"; for reference, tcp mode relaying to an h2c backend: postern-tcp "
               f"{tp['req_per_cpu_s']:.0f} vs haproxy-tcp {th['req_per_cpu_s']:.0f} "
               f"({tp['req_per_cpu_s'] / th['req_per_cpu_s']:.2f})")
    if hp and hh:
        ratio = hp["req_per_cpu_s"] / hh["req_per_cpu_s"]
        return {"figure": figure, "target": ">= 1",
                "measured": f"postern-http {hp['req_per_cpu_s']:.0f} vs haproxy-http "
                            f"{hh['req_per_cpu_s']:.0f} ({ratio:.2f}){ref}",
                "verdict": "holds" if ratio >= 1 else "falls short"}
    if not h2:
        return None
    measured = ("no http-mode pair in this run" if not hp else
                f"postern-http {hp['req_per_cpu_s']:.0f}, no haproxy-http in this run") + ref
    return {"figure": figure, "target": ">= 1", "measured": measured, "verdict": "n/a"}


def _check_rss(rows, kind):
    pname = _postern_name(rows, kind)
    r = next((x for x in rows if x["scenario"] == "idle-rss" and x["server"] == pname), None)
    if not r or r.get("kib_per_conn") is None:
        return None
    what = "with its backend connection" if kind == "tcp" else "no backend connection held"
    return {"figure": f"RSS per idle TLS connection ({pname}, {what})", "target": "< 10 KiB",
            "measured": f"{r['kib_per_conn']:.1f} KiB ({r['conc']} connections)",
            "verdict": "holds" if r["kib_per_conn"] < 10 else "falls short"}


def checks(rows, settings):
    """The figures the issue says must hold, measured (never asserted)."""
    out = []
    kinds = _kinds_in(rows)
    scen = settings["scenarios"]
    for kind in kinds:
        if "full" in scen and "ecdsa" in settings["certs"]:
            out.append(_check_full(rows, settings, kind))
    for kind in kinds:
        if "resumed" in scen and "full" in scen:
            out.append(_check_resumed(rows, settings, kind))
    for kind in kinds:
        if "early" in scen:
            out.append(_check_early(rows, settings, kind))
    out.append(_check_h2(rows))
    for kind in kinds:
        if "idle" in scen:
            out.append(_check_rss(rows, kind))
    return [c for c in out if c]


def _not_measured(settings):
    out = []
    if "hitch" in settings["servers"] and "early" in settings["scenarios"]:
        out.append({"scenario": "0-RTT, hitch",
                    "why": "n/a: hitch has no setting to accept early data."})
    return out


def build(runs, settings, machine, notes, problems, elapsed, when):
    rows = aggregate(runs, settings["servers"])
    total_errors = sum(r.get("errors", 0) for r in runs)
    notes_in = list(notes)  # the driver's; the ones below are derived from the rows
    notes = list(notes)
    busy = [r for r in rows if (r.get("others_on_server_cpu") or 0) > 0.10]
    if busy:
        worst = sorted(busy, key=lambda r: -r["others_on_server_cpu"])
        names = ", ".join(f"{r['scenario']} {r['cert']} c={r['conc']} {r['server']} "
                          f"({r['others_on_server_cpu'] * 100:.0f}%)" for r in worst[:4])
        notes.append(f"other processes used more than 10% of the server CPU (median of the "
                     f"repetitions) during {len(busy)} of {len(rows)} figures; the most: "
                     f"{names}. The machine was shared, so rates and latencies are noisier "
                     f"than usual; the server CPU per operation is the server's own and holds "
                     f"best.")
    la = (machine or {}).get("loadavg") or []
    if len(la) == 2 and None not in la:
        notes.append(f"1-minute load average {la[0]:.2f} when the run started and {la[1]:.2f} "
                     f"when it ended, on {machine.get('cores')} CPUs.")
    if any(r.get("client_saturated") for r in rows):
        notes.append("rows marked 'client-bound' had the client CPUs (load generator and "
                     "backend) at least 95% busy, or the load generator itself at 90% of a "
                     "core: their rate is the client's limit, not the server's; the server "
                     "CPU per operation still holds.")
    return {"when": when, "settings": settings, "machine": machine, "elapsed_s": elapsed,
            "rows": rows, "checks": checks(rows, settings),
            "not_measured": _not_measured(settings),
            "notes": notes, "notes_in": notes_in, "server_log_problems": problems,
            "total_errors": total_errors,
            "runs": runs}


# ---------------------------------------------------------------- text --

def cell(v, fmt="{:.0f}", none="-"):
    """A table cell: v formatted, or none when there is no figure. Every
    scenario's table uses it."""
    return none if v is None else fmt.format(v)


def _pct(v):
    return "-" if v is None else f"{v * 100:.0f}%"


def _pct1(v):
    return "-" if v is None else f"{v * 100:.1f}%"


def _client(row):
    text = _pct(row.get("client_busy"))
    return text + " client-bound" if row.get("client_saturated") else text


def _errors(row):
    if not row["errors"]:
        return "0"
    kinds = row.get("errors_by_kind") or {}
    detail = ", ".join(f"{k} {v}" for k, v in kinds.items() if v)
    extra = "; ".join(row.get("failures") or [])
    return f"**{row['errors']}**" + (f" ({detail})" if detail else "") + (
        f" {extra}" if extra else "")


def machine_line(m):
    parts = [f"{m.get('cpu') or 'unknown CPU'}, {m.get('cores')} cores",
             f"Linux {m.get('kernel')}"]
    for key, label in (("postern", None), ("postern_tree", "built from"),
                       ("wolfssl", "wolfSSL"), ("libuv", "libuv"),
                       ("openssl", "OpenSSL (libssl3)"), ("hitch", None), ("haproxy", None),
                       ("h2load", None)):
        v = m.get(key)
        if not v:
            continue
        if key == "haproxy":
            v = re.sub(r" - https?://\S+", "", v)
            v = re.sub(r"^HAProxy version ", "HAProxy ", v)
        parts.append(f"{label} {v}" if label else v)
    return "; ".join(parts)


def _table(L, head, rows, cells, by_kind=True):
    """Appends one table per kind (with a '#### tcp mode' line) or one
    table; head is the header line, cells(row) the cells of a row."""
    groups = ([(k, [r for r in rows if kind_of(r) == k]) for k in _kinds_in(rows)]
              if by_kind else [(None, rows)])
    for kind, sel in groups:
        if not sel:
            continue
        if kind is not None:
            names = []
            for r in sel:
                if r["server"] not in names:
                    names.append(r["server"])
            L.append(f"#### {KIND_TITLE[kind]}: {', '.join(names)}")
            L.append("")
        L.append(head)
        L.append("|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|")
        for r in sel:
            L.append("| " + " | ".join(cells(r)) + " |")
        L.append("")


def _cert(r):
    return "RSA" if r["cert"] == "rsa" else "ECDSA"


def markdown(doc):
    s = doc["settings"]
    rows = doc["rows"]
    m = doc["machine"]
    L = []
    L.append("## postern bench results")
    L.append("")
    L.append(f"{doc['when']}; {'quick run' if s['quick'] else 'full run'}, "
             f"{s['reps']} repetition{'s' if s['reps'] != 1 else ''} of "
             f"{s['duration_s']:g} s per figure (medians shown), servers interleaved; "
             f"servers pinned to CPU {','.join(map(str, m['server_cpus']))}, load generator "
             f"and backend on CPU {','.join(map(str, m['client_cpus']))}; "
             f"took {doc['elapsed_s']:.0f} s.")
    L.append("")
    L.append(f"Machine: {machine_line(m)}.")
    L.append("")
    if doc["checks"]:
        L.append("### What the issue asks for")
        L.append("")
        L.append("| figure | target | measured | verdict |")
        L.append("|---|---|---|---|")
        for c in doc["checks"]:
            L.append(f"| {c['figure']} | {c['target']} | {c['measured']} | {c['verdict']} |")
        L.append("")
    hs_head = ("| cert | conc | server | handshakes/s | server µs/handshake | server CPU | "
               "p50 ms | p99 ms | errors | client CPUs | postern ÷ this: µs | "
               "postern ÷ this: rate |")
    for scen, title in (("full", "1. Full TLS 1.3 handshakes (one request each)"),
                        ("resumed", "2. Resumed TLS 1.3 handshakes (session ticket, one "
                                    "request each)")):
        sel = [r for r in rows if r["scenario"] == scen]
        if not sel:
            continue
        L.append(f"### {title}")
        L.append("")
        head = hs_head
        if scen == "resumed":
            head = head.replace("| errors |", "| resumed | errors |")

        def cells(r, scen=scen):
            c = [_cert(r), str(r["conc"]), r["server"], cell(r.get("rate")), cell(r.get("cpu_us")),
                 _pct(r.get("server_util")), cell(r.get("p50_ms"), "{:.2f}"),
                 cell(r.get("p99_ms"), "{:.2f}")]
            if scen == "resumed":
                c.append(_pct1(r.get("resumed_frac")))
            return c + [_errors(r), _client(r), cell(r.get("ratio_cpu"), "{:.2f}"),
                        cell(r.get("ratio_rate"), "{:.2f}")]

        _table(L, head, sel, cells)
    _markdown_early(L, doc)
    sel = [r for r in rows if r["scenario"] in ("h1-keepalive", "h2-keepalive")]
    if sel:
        L.append("### 4. Keep-alive requests (h2load)")
        L.append("")
        head = ("| protocol | connections | server | requests/s | server µs/request | "
                "requests per server-CPU-s | server CPU | p50 ms | p99 ms | errors | "
                "client CPUs | postern ÷ this: µs |")

        def cells(r):
            if r["scenario"] == "h1-keepalive":
                proto = "HTTP/1.1"
            elif kind_of(r) == "tcp":
                proto = f"h2, {s['h2_streams']} streams (h2c backend)"
            else:
                proto = f"h2, {s['h2_streams']} streams"
            return [proto, str(r["conc"]), r["server"], cell(r.get("rate")),
                    cell(r.get("cpu_us"), "{:.1f}"), cell(r.get("req_per_cpu_s")),
                    _pct(r.get("server_util")), cell(r.get("p50_ms"), "{:.2f}"),
                    cell(r.get("p99_ms"), "{:.2f}"), _errors(r), _client(r),
                    cell(r.get("ratio_cpu"), "{:.2f}")]

        _table(L, head, sel, cells)
    sel = [r for r in rows if r["scenario"] == "idle-rss"]
    if sel:
        L.append("### 5. Memory per idle TLS connection")
        L.append("")
        head = ("| idle connections | server | baseline RSS MiB | RSS with them MiB | "
                "KiB per connection | descriptors | errors | postern ÷ this |")

        def cells(r):
            return [str(r["conc"]), r["server"],
                    cell(r.get("base_rss_kib") and r["base_rss_kib"] / 1024, "{:.1f}"),
                    cell(r.get("rss_kib") and r["rss_kib"] / 1024, "{:.1f}"),
                    cell(r.get("kib_per_conn"), "{:.1f}"), cell(r.get("fds")), _errors(r),
                    cell(r.get("ratio_rss"), "{:.2f}")]

        _table(L, head, sel, cells)
    if doc.get("certs"):
        import certs  # bench/certs.py: its own table (no kinds, no ratios by concurrency)
        L.extend(certs.markdown(doc["certs"]))
    if doc.get("held"):
        import idle  # bench/idle.py: connections held
        L.extend(idle.markdown(doc["held"]))
    if doc.get("replay"):
        import replay  # bench/replay.py: local against shared (Redis) strike register
        L.extend(replay.markdown(doc["replay"]))
    if doc.get("keepalive"):
        import keepalive  # bench/keepalive.py: postern-http against haproxy-http and h2o
        L.extend(keepalive.markdown(doc["keepalive"]))
    if doc.get("overload"):
        import overload  # bench/overload.py: open-loop handshake flood
        L.extend(overload.markdown(doc["overload"]))
    nm = doc.get("not_measured") or []
    if nm:
        L.append("### Not measured")
        L.append("")
        for n in nm:
            L.append(f"- {n['scenario']}: {n['why']}")
        L.append("")
    if doc["notes"] or doc["server_log_problems"]:
        L.append("### Notes")
        L.append("")
        for n in doc["notes"]:
            L.append(f"- {n}")
        for name, lines in doc["server_log_problems"].items():
            L.append(f"- {name} logged problems, e.g.: `{lines[0][:200]}`")
        L.append("")
    L.append(f"Errors in all runs: {doc['total_errors']}.")
    L.append("")
    return "\n".join(L)


def _markdown_early(L, doc):
    """Section 3: 0-RTT rates and costs, and the round-trip count."""
    s = doc["settings"]
    rows = doc["rows"]
    rate = [r for r in rows if r["scenario"] == "early"]
    rtt = [r for r in rows if r["scenario"] in ("rtt-resumed", "rtt-early")]
    if not rate and not rtt:
        return
    L.append("### 3. 0-RTT: the request sent as early data")
    L.append("")
    L.append("Resumed connections whose request goes in the first flight as early data "
             "(postern: `early_data: accept`, tcp mode with `tcp_early_data: forward`; "
             "HAProxy: `allow-0rtt`; hitch cannot). \"server µs, resumed\" is the same "
             "server's cost per resumed handshake without early data at that concurrency "
             "(scenario 2, early data off).")
    L.append("")
    if rate:
        head = ("| cert | conc | server | requests/s | server µs/request | server µs, resumed | "
                "server CPU | p50 ms | p99 ms | handshake p50 ms | early data accepted | "
                "errors | client CPUs | postern ÷ this: µs | postern ÷ this: rate |")

        def cells(r):
            res = _find(rows, "resumed", r["cert"], r["conc"], r["server"])
            return [_cert(r), str(r["conc"]), r["server"], cell(r.get("rate")),
                    cell(r.get("cpu_us")), cell(res.get("cpu_us") if res else None),
                    _pct(r.get("server_util")), cell(r.get("p50_ms"), "{:.2f}"),
                    cell(r.get("p99_ms"), "{:.2f}"), cell(r.get("hs_p50_ms"), "{:.2f}"),
                    _pct1(r.get("early_frac")), _errors(r), _client(r),
                    cell(r.get("ratio_cpu"), "{:.2f}"), cell(r.get("ratio_rate"), "{:.2f}")]

        _table(L, head, rate, cells)
    if rtt:
        d = s.get("rtt_ms")
        L.append(f"Round trips: the load generator holds every byte it sends for {d:g} ms "
                 f"(an emulated {d:g} ms round trip; loopback's own is about 10 µs), "
                 f"{s.get('rtt_conc')} connections at a time for {s.get('rtt_duration_s'):g} s. "
                 f"A resumed request goes with the client's Finished, so its answer takes two "
                 f"round trips; a 0-RTT request answered at once (0.5-RTT data, RFC 8446 2.3) "
                 f"takes one, and comes before the client's Finished has left. Round trips = "
                 f"response p50 / {d:g} ms (client, server and backend work add a little).")
        L.append("")
        head = ("| server | resumed: response p50 ms | resumed: round trips | "
                "0-RTT: response p50 ms | 0-RTT: round trips | 0-RTT: answered before the "
                "client's Finished | 0-RTT: early data accepted | errors |")
        names = []
        for r in rtt:
            if r["server"] not in names:
                names.append(r["server"])
        pseudo = []
        for name in names:
            res = next((r for r in rtt if r["server"] == name and r["scenario"] == "rtt-resumed"),
                       None)
            ear = next((r for r in rtt if r["server"] == name and r["scenario"] == "rtt-early"),
                       None)
            base = ear or res
            pseudo.append({"server": name, "kind": kind_of(base), "res": res or {}, "ear": ear or {},
                           "errors": (res or {}).get("errors", 0) + (ear or {}).get("errors", 0)})

        def cells(p):
            res, ear = p["res"], p["ear"]
            errs = {"errors": p["errors"], "errors_by_kind": {}, "failures":
                    (res.get("failures") or []) + (ear.get("failures") or [])}
            return [p["server"], cell(res.get("resp_p50_ms"), "{:.1f}"),
                    cell(res.get("round_trips"), "{:.1f}"), cell(ear.get("resp_p50_ms"), "{:.1f}"),
                    cell(ear.get("round_trips"), "{:.1f}"), _pct(ear.get("before_fin_frac")),
                    _pct1(ear.get("early_frac")), _errors(errs)]

        _table(L, head, pseudo, cells)


def one_line(r):
    what = f"{r['scenario']} {r['cert']} c={r['conc']} {r['server']}"
    if r.get("failure") and not r.get("ok"):
        return f"{what}: FAILED: {r['failure']}"
    if r["scenario"] == "idle-rss":
        return (f"{what}: {cell(r.get('kib_per_conn'), '{:.1f}')} KiB/conn, "
                f"errors {r.get('errors')}")
    extra = ""
    if r.get("early_frac") is not None:
        extra += f", early accepted {_pct1(r['early_frac'])}"
    if r.get("round_trips") is not None:
        extra += (f", response p50 {r['resp_p50_ms']:.1f} ms = {r['round_trips']:.1f} RTT, "
                  f"before Finished {_pct(r.get('before_fin_frac'))}")
    return (f"{what}: {cell(r.get('rate'))}/s, {cell(r.get('cpu_us'), '{:.1f}')} us/op, "
            f"server CPU {_pct(r.get('server_util'))}, p99 {cell(r.get('p99_ms'), '{:.2f}')} ms, "
            f"errors {r.get('errors')}, client CPUs {_pct(r.get('client_busy'))}{extra}")


def update_readme(path, md):
    """Replaces the results section of bench/README.md (between markers)."""
    begin, end = "<!-- bench-results:begin -->", "<!-- bench-results:end -->"
    text = path.read_text()
    if begin not in text or end not in text:
        return False
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    body = md.replace("## postern bench results\n\n", "", 1)
    path.write_text(head + begin + "\n" + body.rstrip() + "\n" + end + tail)
    return True


# ---------------------------------------------------------------- plot --

PANELS = (("full", "ecdsa", "full handshakes, ECDSA P-256"),
          ("full", "rsa", "full handshakes, RSA-2048"),
          ("resumed", "ecdsa", "resumed handshakes, ECDSA"),
          ("resumed", "rsa", "resumed handshakes, RSA"))


def _series(doc):
    """{(scenario, cert): {server: [(conc, rate, cpu_us)]}} for panels with data."""
    out = {}
    for r in doc["rows"]:
        if r["scenario"] in ("full", "resumed") and r.get("rate"):
            out.setdefault((r["scenario"], r["cert"]), {}).setdefault(r["server"], []).append(
                (r["conc"], r["rate"], r.get("cpu_us") or 0))
    for d in out.values():
        for pts in d.values():
            pts.sort()
    return out


def plot(doc, png, workdir):
    """Handshakes/s (top) and server µs per handshake (bottom) against
    concurrency, one line per server, one column per scenario. Returns the
    PNG's path or None (see plot_grid)."""
    series = _series(doc)
    panels = [p for p in PANELS if (p[0], p[1]) in series]
    if not panels:
        return None
    grid = []
    for col, ylabel in ((1, "handshakes/s"), (2, "server CPU µs per handshake")):
        grid.append([{"title": title, "xlabel": "concurrent connections", "ylabel": ylabel,
                      "logx": 2,
                      # Rates rise with concurrency, costs fall: keep the key
                      # where the lines are not.
                      "key": "top left" if col == 1 else "bottom left",
                      "series": {server: [(p[0], p[col]) for p in pts]
                                 for server, pts in series[(scen, cert)].items()}}
                     for scen, cert, title in panels])
    return plot_grid(png, f"postern bench, {doc['when']} (server on one pinned CPU)", grid)


def scale_plot(doc, png):
    """How cost grows with scale (issue 17), one panel per figure, one line per
    server: from the certs scenario, the full handshake's server CPU for a
    random name, start-up time and RSS per certificate against N; from the
    held scenario, RSS per idle connection against the connections held.
    Returns the PNG's path, or None when no scenario gave points."""
    certs = [r for r in doc.get("certs") or [] if not r.get("skipped")]
    held = [r for r in doc.get("held") or [] if not r.get("skipped")]

    def series(rows, x, y, name=lambda r: r["server"]):
        out = {}
        for r in rows:
            if r.get(x) is not None and r.get(y) is not None:
                out.setdefault(name(r), []).append((r[x], r[y]))
        return out

    def rss_per_cert(r):
        one = next((c for c in certs if c["server"] == r["server"] and c["n"] == 1), None)
        if one is None or r["n"] <= 1 or r.get("rss_kib") is None:
            return None
        return (r["rss_kib"] - one["rss_kib"]) / (r["n"] - 1)

    for r in certs:
        r.setdefault("kib_per_cert", rss_per_cert(r))
    row = []
    for y, ylabel, title in (("cpu_us", "server CPU µs per full handshake", "handshake, random name"),
                             ("startup_s", "seconds to the first handshake", "start-up"),
                             ("kib_per_cert", "RSS KiB per certificate", "memory per certificate")):
        ser = series(certs, "n", y)
        if ser:
            row.append({"title": title, "xlabel": "certificates (N)", "ylabel": ylabel, "logx": 10,
                        "series": ser})
    ser = series(held, "held", "kib_per_conn",
                 name=lambda r: r["server"] if r["server"].endswith(("-tcp", "-http")) or
                 r.get("kind") is None else f"{r['server']}-{r['kind']}")
    if ser:
        row.append({"title": "idle TLS connections held", "xlabel": "connections held",
                    "ylabel": "RSS KiB per connection", "logx": 10, "series": ser})
    if not row:
        return None
    return plot_grid(png, f"postern at scale, {doc['when']}", [row])


def plot_grid(png, title, grid):
    """Draws a grid of line plots into the PNG png. grid is a list of rows,
    each a list of panels: {"title", "xlabel", "ylabel", "logx" (a base, or
    None), "key" (gnuplot placement, optional), "series": {name: [(x, y)]}}.
    http-mode servers (names ending in -http) are dashed, the others solid.
    gnuplot if installed, else Debian's python3-matplotlib. Returns the PNG's
    path, or None when neither is installed or drawing failed."""
    png = Path(png)
    grid = [[dict(p, series={k: sorted(v) for k, v in p["series"].items() if v})
             for p in row] for row in grid]
    if shutil.which("gnuplot"):
        return _gnuplot(png, title, grid)
    try:
        r = subprocess.run(["/usr/bin/python3", "-c", "import matplotlib"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        if r.returncode == 0:
            return _matplotlib(png, title, grid)
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def _gnuplot(png, title, grid):
    cols = max(len(row) for row in grid)
    tmp = Path(tempfile.mkdtemp(prefix="bench-plot-"))
    try:
        lines = [f"set terminal pngcairo size {380 * cols + 80},{380 * len(grid)} font 'sans,10'",
                 f"set output '{png}'",
                 f"set multiplot layout {len(grid)},{cols} title '{title}'", "set grid"]
        n = 0
        for row in grid:
            for p in row:
                plots = []
                for name, pts in p["series"].items():
                    n += 1
                    f = tmp / f"{n}.dat"
                    f.write_text("".join(f"{x} {y}\n" for x, y in pts))
                    dt = 2 if name.endswith("-http") else 1
                    plots.append(f"'{f}' using 1:2 with linespoints lw 2 pt 7 dt {dt} "
                                 f"title '{name}'")
                lines.append(f"set logscale x {p['logx']}" if p.get("logx") else "unset logscale x")
                lines += [f"set title '{p['title']}'", f"set xlabel '{p['xlabel']}'",
                          f"set ylabel '{p['ylabel']}'", f"set key {p.get('key', 'top left')}",
                          "set yrange [0:*]"]
                lines.append("plot " + ", ".join(plots) if plots else "clear")
        lines.append("unset multiplot")
        script = tmp / "plot.gp"
        script.write_text("\n".join(lines) + "\n")
        r = subprocess.run(["gnuplot", str(script)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        if r.returncode != 0 or not png.exists():
            return None
        return str(png)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _matplotlib(png, title, grid):
    import json
    code = """
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
title, grid, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
cols = max(len(row) for row in grid)
fig, axes = plt.subplots(len(grid), cols, figsize=(4 * cols + 1, 4 * len(grid)), squeeze=False)
for i, row in enumerate(grid):
    for j, p in enumerate(row):
        ax = axes[i][j]
        for name, pts in p["series"].items():
            ax.plot([q[0] for q in pts], [q[1] for q in pts], marker="o", label=name,
                    linestyle="--" if name.endswith("-http") else "-")
        if p.get("logx"):
            ax.set_xscale("log", base=p["logx"])
        ax.set_ylim(bottom=0); ax.grid(True)
        ax.set_title(p["title"]); ax.set_xlabel(p["xlabel"]); ax.set_ylabel(p["ylabel"])
        ax.legend()
fig.suptitle(title); fig.tight_layout(); fig.savefig(out, dpi=90)
"""
    r = subprocess.run(["/usr/bin/python3", "-c", code, title, json.dumps(grid), str(png)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    return str(png) if r.returncode == 0 and os.path.exists(png) else None
