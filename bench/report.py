"""Turns the bench's runs into medians, ratios, the checks the issue asks
for, a markdown report, JSON and a plot."""

import os
import re
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

MEDIAN_FIELDS = ("rate", "cpu_us", "server_util", "p50_ms", "p99_ms", "resumed_frac",
                 "client_busy", "client_cpu", "req_per_cpu_s", "kib_per_conn", "base_rss_kib",
                 "rss_kib", "fds", "base_fds", "ok", "others_on_server_cpu")

SCENARIO_ORDER = ("full", "resumed", "h1-keepalive", "h2-keepalive", "idle-rss")

# Scenarios of the issue that cannot be measured yet, and why.
NOT_YET = [
    {"scenario": "0-RTT (scenario 3: the request sent as early data)",
     "why": "postern's early data (issue 4) is still being built; hitch cannot accept early "
            "data; HAProxy can (allow-0rtt). When issue 4 lands, the load generator gets an "
            "early mode (the request sent with wolfSSL_write_early_data on a resumed "
            "connection) and postern runs with early_data: accept."},
    {"scenario": "http mode: postern http against HAProxy mode http (full, resumed, keep-alive "
                 "h1 and h2, memory)",
     "why": "postern's http mode is issue 3, being built. The h2 keep-alive figure the issue "
            "asks for (requests per server-CPU-second at least HAProxy's) is an http-mode "
            "figure; the h2 row below is tcp mode relaying to an h2c backend, which compares "
            "only the TLS relay."},
]


def _median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def _key(r):
    return (r["scenario"], r["cert"], r["conc"], r["server"])


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
        srv = server_order.index(row["server"]) if row["server"] in server_order else 99
        return (s, row["cert"] != "ecdsa", row["conc"], srv)

    rows.sort(key=order)
    # postern's figure over each peer's, in the same scenario and kind.
    by_point = {}
    for row in rows:
        by_point.setdefault((row["scenario"], row["cert"], row["conc"], row["kind"]), {})[
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
    """postern in any mode ("postern", "postern-http")."""
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


def checks(rows, settings):
    """The figures the issue says must hold, measured (never asserted)."""
    out = []
    peers = [s for s in settings["servers"] if not is_postern(s)]
    # 1. postern's CPU per full ECDSA handshake at most half the best peer's.
    if "full" in settings["scenarios"] and "ecdsa" in settings["certs"]:
        per = []
        for conc in settings["conc"]:
            p = _find(rows, "full", "ecdsa", conc, "postern")
            best = None
            for name in peers:
                r = _find(rows, "full", "ecdsa", conc, name)
                if r and r.get("kind") != (p or {}).get("kind"):
                    continue  # only servers of postern's kind (tcp)
                if r and r.get("cpu_us") and (best is None or r["cpu_us"] < best["cpu_us"]):
                    best = r
            if p and p.get("cpu_us") and best:
                per.append((conc, p["cpu_us"], best["server"], best["cpu_us"],
                            p["cpu_us"] / best["cpu_us"]))
        if not peers:
            out.append({"figure": "server CPU per full ECDSA handshake, postern / best tcp peer",
                        "target": "<= 0.50", "measured": "no peers in this run",
                        "verdict": "n/a"})
        elif per:
            worst = max(x[4] for x in per)
            text = "; ".join(f"c={c}: {pu:.0f} us vs {bn} {bu:.0f} us = {r:.2f}"
                             for c, pu, bn, bu, r in per)
            out.append({"figure": "server CPU per full ECDSA handshake, postern / best tcp peer",
                        "target": "<= 0.50", "measured": text,
                        "verdict": "holds" if worst <= 0.5 else "falls short"})
    # 2. resumed cheaper than full, and really resumed.
    if "resumed" in settings["scenarios"] and "full" in settings["scenarios"]:
        parts, ok = [], True
        for cert in settings["resumed_certs"]:
            for conc in settings["conc"]:
                f = _find(rows, "full", cert, conc, "postern")
                r = _find(rows, "resumed", cert, conc, "postern")
                if not (f and r and f.get("cpu_us") and r.get("cpu_us")):
                    continue
                frac = r.get("resumed_frac") or 0
                good = r["cpu_us"] < f["cpu_us"] and frac >= 0.99
                ok = ok and good
                parts.append(f"{cert} c={conc}: {r['cpu_us']:.0f} vs {f['cpu_us']:.0f} us "
                             f"({r['cpu_us'] / f['cpu_us']:.2f}), {frac * 100:.1f}% resumed")
        if parts:
            out.append({"figure": "postern: server CPU per resumed handshake / per full one",
                        "target": "< 1, with >= 99% of handshakes resumed",
                        "measured": "; ".join(parts), "verdict": "holds" if ok else "falls short"})
    out.append({"figure": "0-RTT requests answered in one round trip", "target": "yes",
                "measured": "not measurable yet (issue 4)", "verdict": "n/a"})
    # 4. h2 keep-alive requests per server-CPU-second at least HAProxy's, in
    # http mode (servers of kind "http"); tcp mode is shown for reference.
    h2 = [r for r in rows if r["scenario"] == "h2-keepalive"]

    def pick(kind, want):
        return next((r for r in h2 if r.get("kind") == kind and want(r["server"])
                     and r.get("req_per_cpu_s")), None)

    figure = "h2 keep-alive requests per server-CPU-second, postern / HAProxy (http mode)"
    hp, hh = pick("http", is_postern), pick("http", lambda n: n.startswith("haproxy"))
    if hp and hh:
        ratio = hp["req_per_cpu_s"] / hh["req_per_cpu_s"]
        out.append({"figure": figure, "target": ">= 1",
                    "measured": f"postern {hp['req_per_cpu_s']:.0f} vs HAProxy "
                                f"{hh['req_per_cpu_s']:.0f} ({ratio:.2f})",
                    "verdict": "holds" if ratio >= 1 else "falls short"})
    else:
        measured = "http mode not available yet (issue 3)"
        tp, th = pick("tcp", is_postern), pick("tcp", lambda n: n.startswith("haproxy"))
        if tp and th:
            measured += (f"; tcp mode with an h2c backend, for reference: postern "
                         f"{tp['req_per_cpu_s']:.0f} vs HAProxy {th['req_per_cpu_s']:.0f} "
                         f"requests per server-CPU-second "
                         f"({tp['req_per_cpu_s'] / th['req_per_cpu_s']:.2f})")
        out.append({"figure": figure, "target": ">= 1", "measured": measured,
                    "verdict": "n/a"})
    # 5. RSS per idle TLS connection.
    if "idle" in settings["scenarios"]:
        r = next((x for x in rows if x["scenario"] == "idle-rss" and x["server"] == "postern"),
                 None)  # tcp mode
        if r and r.get("kib_per_conn") is not None:
            out.append({"figure": "RSS per idle TLS connection (postern, tcp mode, with its "
                                  "backend connection)", "target": "< 10 KiB",
                        "measured": f"{r['kib_per_conn']:.1f} KiB ({r['conc']} connections)",
                        "verdict": "holds" if r["kib_per_conn"] < 10 else "falls short"})
    return out


def build(runs, settings, machine, notes, problems, elapsed, when):
    rows = aggregate(runs, settings["servers"])
    total_errors = sum(r.get("errors", 0) for r in runs)
    notes_in = list(notes)  # the driver's; the ones below are derived from the rows
    notes = list(notes)
    busy = [r for r in rows if (r.get("others_on_server_cpu") or 0) > 0.10]
    if busy:
        worst = max(r["others_on_server_cpu"] for r in busy)
        notes.append(f"other processes used more than 10% of the server CPU during {len(busy)} "
                     f"of {len(rows)} figures (up to {worst * 100:.0f}%): the machine was "
                     f"shared, so rates and latencies are noisier than usual; the server CPU "
                     f"per operation is the server's own and holds best.")
    if any(r.get("client_saturated") for r in rows):
        notes.append("rows marked 'client-bound' had the client CPUs (load generator and "
                     "backend) at least 95% busy, or the load generator itself at 90% of a "
                     "core: their rate is the client's limit, not the server's; the server "
                     "CPU per operation still holds.")
    return {"when": when, "settings": settings, "machine": machine, "elapsed_s": elapsed,
            "rows": rows, "checks": checks(rows, settings), "not_yet": NOT_YET,
            "notes": notes, "notes_in": notes_in, "server_log_problems": problems,
            "total_errors": total_errors,
            "runs": runs}


# ---------------------------------------------------------------- text --

def _f(v, fmt="{:.0f}", none="-"):
    return none if v is None else fmt.format(v)


def _pct(v):
    return "-" if v is None else f"{v * 100:.0f}%"


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
    for key, label in (("postern", None), ("wolfssl", "wolfSSL"), ("libuv", "libuv"),
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
    for scen, title in (("full", "1. Full TLS 1.3 handshakes (tcp mode, one request each)"),
                        ("resumed", "2. Resumed TLS 1.3 handshakes (session ticket)")):
        sel = [r for r in rows if r["scenario"] == scen]
        if not sel:
            continue
        L.append(f"### {title}")
        L.append("")
        head = hs_head
        if scen == "resumed":
            head = head.replace("| errors |", "| resumed | errors |")
        L.append(head)
        L.append("|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|")
        for r in sel:
            cells = [r["cert"].upper() if r["cert"] == "rsa" else "ECDSA", str(r["conc"]),
                     r["server"], _f(r.get("rate")), _f(r.get("cpu_us")),
                     _pct(r.get("server_util")), _f(r.get("p50_ms"), "{:.2f}"),
                     _f(r.get("p99_ms"), "{:.2f}")]
            if scen == "resumed":
                cells.append(_pct(r.get("resumed_frac")) if r.get("resumed_frac") is None else
                             f"{r['resumed_frac'] * 100:.1f}%")
            cells += [_errors(r), _client(r), _f(r.get("ratio_cpu"), "{:.2f}"),
                      _f(r.get("ratio_rate"), "{:.2f}")]
            L.append("| " + " | ".join(cells) + " |")
        L.append("")
    L.append("### 3. 0-RTT")
    L.append("")
    L.append("n/a for now: " + NOT_YET[0]["why"])
    L.append("")
    sel = [r for r in rows if r["scenario"] in ("h1-keepalive", "h2-keepalive")]
    if sel:
        L.append("### 4. Keep-alive requests (h2load, tcp mode)")
        L.append("")
        L.append("| protocol | connections | server | requests/s | server µs/request | "
                 "requests per server-CPU-s | server CPU | p50 ms | p99 ms | errors | "
                 "client CPUs | postern ÷ this: µs |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in sel:
            proto = ("HTTP/1.1" if r["scenario"] == "h1-keepalive"
                     else f"h2, {s['h2_streams']} streams (h2c backend)")
            L.append("| " + " | ".join([
                proto, str(r["conc"]), r["server"], _f(r.get("rate")),
                _f(r.get("cpu_us"), "{:.1f}"), _f(r.get("req_per_cpu_s")),
                _pct(r.get("server_util")), _f(r.get("p50_ms"), "{:.2f}"),
                _f(r.get("p99_ms"), "{:.2f}"), _errors(r), _client(r),
                _f(r.get("ratio_cpu"), "{:.2f}")]) + " |")
        L.append("")
    sel = [r for r in rows if r["scenario"] == "idle-rss"]
    if sel:
        L.append("### 5. Memory per idle TLS connection")
        L.append("")
        L.append("| idle connections | server | baseline RSS MiB | RSS with them MiB | "
                 "KiB per connection | descriptors | errors | postern ÷ this |")
        L.append("|---|---|---|---|---|---|---|---|")
        for r in sel:
            L.append("| " + " | ".join([
                str(r["conc"]), r["server"], _f(r.get("base_rss_kib") and
                                                r["base_rss_kib"] / 1024, "{:.1f}"),
                _f(r.get("rss_kib") and r["rss_kib"] / 1024, "{:.1f}"),
                _f(r.get("kib_per_conn"), "{:.1f}"), _f(r.get("fds")), _errors(r),
                _f(r.get("ratio_rss"), "{:.2f}")]) + " |")
        L.append("")
    L.append("### Not measured yet")
    L.append("")
    for n in NOT_YET:
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


def one_line(r):
    what = f"{r['scenario']} {r['cert']} c={r['conc']} {r['server']}"
    if r.get("failure") and not r.get("ok"):
        return f"{what}: FAILED: {r['failure']}"
    if r["scenario"] == "idle-rss":
        return (f"{what}: {_f(r.get('kib_per_conn'), '{:.1f}')} KiB/conn, "
                f"errors {r.get('errors')}")
    return (f"{what}: {_f(r.get('rate'))}/s, {_f(r.get('cpu_us'), '{:.1f}')} us/op, "
            f"server CPU {_pct(r.get('server_util'))}, p99 {_f(r.get('p99_ms'), '{:.2f}')} ms, "
            f"errors {r.get('errors')}, client CPUs {_pct(r.get('client_busy'))}")


def update_readme(path, md):
    """Replaces the results section of bench/README.md (between markers)."""
    begin, end = "<!-- bench-results:begin -->", "<!-- bench-results:end -->"
    text = path.read_text()
    if begin not in text or end not in text:
        return False
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    body = md.replace("## postern bench results\n\n", "", 1)
    body = body.replace("\n### ", "\n### ")
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
    concurrency, one line per server, one column per scenario. gnuplot if
    installed, else Debian's python3-matplotlib. Returns the PNG's path or
    None."""
    series = _series(doc)
    panels = [p for p in PANELS if (p[0], p[1]) in series]
    if not panels:
        return None
    if shutil.which("gnuplot"):
        return _gnuplot(doc, series, panels, Path(png))
    try:
        r = subprocess.run(["/usr/bin/python3", "-c", "import matplotlib"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        if r.returncode == 0:
            return _matplotlib(series, panels, Path(png))
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def _gnuplot(doc, series, panels, png):
    tmp = Path(tempfile.mkdtemp(prefix="bench-plot-"))
    try:
        lines = ["set terminal pngcairo size %d,760 font 'sans,10'" % (380 * len(panels) + 80),
                 f"set output '{png}'",
                 f"set multiplot layout 2,{len(panels)} title 'postern bench, "
                 f"{doc['when']} (server on one pinned CPU)'",
                 "set logscale x 2", "set grid", "set key top left",
                 "set xlabel 'concurrent connections'"]
        for row, (col, ylabel) in enumerate(((1, "handshakes/s"),
                                             (2, "server CPU µs per handshake"))):
            for scen, cert, title in panels:
                data = series[(scen, cert)]
                plots = []
                for server, pts in data.items():
                    f = tmp / f"{scen}-{cert}-{server}.dat"
                    f.write_text("".join(f"{c} {rate} {cpu}\n" for c, rate, cpu in pts))
                    plots.append(f"'{f}' using 1:{col + 1} with linespoints lw 2 pt 7 "
                                 f"title '{server}'")
                lines.append(f"set title '{title}'")
                lines.append(f"set ylabel '{ylabel}'")
                lines.append("set yrange [0:*]")
                lines.append("plot " + ", ".join(plots))
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


def _matplotlib(series, panels, png):
    import json
    code = """
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
series, panels, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
fig, axes = plt.subplots(2, len(panels), figsize=(4 * len(panels) + 1, 8), squeeze=False)
for i, (scen, cert, title) in enumerate(panels):
    data = series[scen + "/" + cert]
    for row, (col, label) in enumerate(((1, "handshakes/s"), (2, "server CPU us per handshake"))):
        ax = axes[row][i]
        for server, pts in data.items():
            ax.plot([p[0] for p in pts], [p[col] for p in pts], marker="o", label=server)
        ax.set_xscale("log", base=2); ax.set_ylim(bottom=0); ax.grid(True)
        ax.set_title(title); ax.set_xlabel("concurrent connections"); ax.set_ylabel(label)
        ax.legend()
fig.tight_layout(); fig.savefig(out, dpi=90)
"""
    flat = {f"{k[0]}/{k[1]}": v for k, v in series.items()}
    r = subprocess.run(["/usr/bin/python3", "-c", code, json.dumps(flat), json.dumps(panels),
                        str(png)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    return str(png) if r.returncode == 0 and os.path.exists(png) else None
