"""The bench's measurements. Each function runs one measurement against one
running server and returns a dict of figures (one "run"); run.py repeats
them, interleaving servers, and report.py takes medians.

Server CPU time comes from /proc/PID/stat (utime + stime of every thread of
every process of the server), read when the load generator starts its
measurement window and when it ends it, and is divided by the operations
completed in the window: microseconds of server CPU per handshake or per
request. That figure holds even when the client, not the server, is the
limit; the run also records how busy the client CPUs were, so the report can
say when the client was saturated."""

import json
import os
import re
import signal
import subprocess
import threading
import time

import procs

# A client whose CPUs are busier than this was the limit of the rate.
CLIENT_SATURATED = 0.95


def _events(p):
    """The JSON event lines the load generator prints, parsed; other lines
    (diagnostics) are skipped."""
    for raw in p.stdout:
        try:
            yield json.loads(raw)
        except ValueError:
            continue


def _watchdog(proc, seconds):
    """Kills proc's process group after seconds (a hung client); returns the
    timer to cancel."""
    def fire():
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    t = threading.Timer(seconds, fire)
    t.daemon = True
    t.start()
    return t


def _others(b0, b1, server_cpu_s, wall_s):
    """Fraction of the server CPU's time that went to anything but the server
    (other processes on a shared machine), between two cpus_busy() reads."""
    if wall_s <= 0:
        return 0.0
    busy_s = procs.busy_fraction(b0, b1) * wall_s
    return max(0.0, (busy_s - server_cpu_s) / wall_s)


def _base(server, scenario, conc):
    return {"scenario": scenario, "server": server.name, "kind": server.kind,
            "cert": server.cert.variant, "conc": conc}


SCENARIO_OF_MODE = {"full": "full", "resume": "resumed", "early": "early"}


def handshakes(env, server, mode, conc, duration, warmup, log, delay_ms=0.0, extra_args=(),
               on_measure=None):
    """Handshake throughput and cost: loadgen in full, resume or early
    (0-RTT) mode, one request per connection. With delay_ms, the load
    generator holds everything it sends that long (an emulated round trip;
    scenario "rtt-resumed" or "rtt-early"): the response time then counts the
    round trips the client waited for. extra_args go to the load generator
    as they are (the certs scenario's --sni-count); on_measure() runs when
    the measured window starts. Returns a run dict (errors > 0 and
    "failure" set when it went wrong)."""
    scenario = SCENARIO_OF_MODE[mode]
    if delay_ms:
        scenario = f"rtt-{scenario}"
    run = _base(server, scenario, conc)
    cmd = [env.loadgen, "--connect", f"127.0.0.1:{server.port}", "--sni", server.cert.sni,
           "--mode", mode, "--conc", conc, "--duration", duration, "--warmup", warmup]
    if delay_ms:
        cmd += ["--delay-ms", delay_ms]
    if getattr(env, "sigalgs", None):
        cmd += ["--sigalgs", env.sigalgs]
    cmd += list(extra_args)
    p = procs.spawn(cmd, env.client_cpus, log, stdout=subprocess.PIPE)
    dog = _watchdog(p, warmup + duration + 40)
    s0 = c0 = t0 = None
    result = None
    try:
        for ev in _events(p):
            if ev.get("event") == "measure":
                s0, c0, t0 = server.cpu_seconds(), procs.cpus_busy(env.client_cpus), time.monotonic()
                b0 = procs.cpus_busy(env.server_cpus)
                if on_measure is not None:
                    on_measure()
            elif ev.get("event") == "result":
                s1, c1, t1 = server.cpu_seconds(), procs.cpus_busy(env.client_cpus), time.monotonic()
                b1 = procs.cpus_busy(env.server_cpus)
                result = ev
                if s0 is not None:
                    run["server_cpu_s"] = s1 - s0
                    run["client_busy"] = procs.busy_fraction(c0, c1)
                    run["window_s"] = t1 - t0
                    run["others_on_server_cpu"] = _others(b0, b1, s1 - s0, t1 - t0)
        p.wait()
    finally:
        dog.cancel()
        p.stdout.close()
    if result is None or s0 is None:
        run.update(ok=0, errors=1, failure=f"loadgen produced no result (exit {p.returncode})")
        return run
    ok = result["ok"]
    window = result["window_s"]
    run.update(
        ok=ok, errors=result["errors"], errors_by_kind=result["errors_by_kind"],
        rate=ok / window if window > 0 else 0.0,
        cpu_us=run["server_cpu_s"] / ok * 1e6 if ok else None,
        server_util=run["server_cpu_s"] / window if window > 0 else 0.0,
        p50_ms=result["p50_ms"], p99_ms=result["p99_ms"],
        resumed_frac=result["resumed"] / ok if ok else 0.0,
        client_cpu=result["cpu_frac"],
        hs_p50_ms=result.get("hs_p50_ms"), resp_p50_ms=result.get("resp_p50_ms"),
        resp_p99_ms=result.get("resp_p99_ms"))
    if mode == "early":
        # Requests sent as early data and accepted, and (with delay_ms)
        # responses that came before the client's Finished had left.
        run["early_frac"] = result["early_accepted"] / ok if ok else 0.0
        run["early_sent_frac"] = result["early_sent"] / ok if ok else 0.0
    if delay_ms:
        run["delay_ms"] = delay_ms
        run["before_fin_frac"] = result["before_fin"] / ok if ok else 0.0
        # Round trips: the response time in emulated round trips. The real
        # loopback round trip and the work of client, server and backend
        # add a little; the report rounds.
        run["round_trips"] = result["resp_p50_ms"] / delay_ms if ok else None
    run["client_saturated"] = run["client_busy"] >= CLIENT_SATURATED or result["cpu_frac"] >= 0.9
    if not server.alive():
        run["errors"] += 1
        run["failure"] = "server exited"
    return run


_H2LOAD_REQS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                          r"(\d+) failed, (\d+) errored, (\d+) timeout")
_H2LOAD_CODES = re.compile(r"status codes: (\d+) 2xx")


def _quantile(sorted_vals, q):
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, max(0, int(round(q * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[i]


def keepalive(env, server, proto, conc, streams, duration, log):
    """Keep-alive request throughput with h2load: HTTP/1.1 (one request at a
    time per connection) or h2 (`streams` concurrent streams per connection;
    through a tcp-mode proxy the backend speaks h2c). Server CPU is counted
    over h2load's whole run; its conc handshakes are a negligible part."""
    run = _base(server, f"{proto}-keepalive", conc)
    reqlog = os.path.join(env.workdir, f"h2load-{server.name}-{proto}.log")
    cmd = [env.h2load, "-c", conc, "-t", 1, "-D", f"{int(duration * 1000)}ms",
           f"--log-file={reqlog}"]
    cmd += ["--h1"] if proto == "h1" else ["-m", streams]
    cmd += [f"https://127.0.0.1:{server.port}/"]
    s0, c0, t0 = server.cpu_seconds(), procs.cpus_busy(env.client_cpus), time.monotonic()
    b0 = procs.cpus_busy(env.server_cpus)
    p = procs.spawn(cmd, env.client_cpus, log, stdout=subprocess.PIPE)
    dog = _watchdog(p, duration + 40)
    try:
        out = p.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    finally:
        dog.cancel()
        p.stdout.close()
    s1, c1, t1 = server.cpu_seconds(), procs.cpus_busy(env.client_cpus), time.monotonic()
    b1 = procs.cpus_busy(env.server_cpus)
    with open(log, "a") as f:
        f.write(out)
    m = _H2LOAD_REQS.search(out)
    if m is None:
        run.update(ok=0, errors=1, failure=f"h2load printed no summary (exit {p.returncode})")
        return run
    total, started, done, ok, failed, errored, timeout = map(int, m.groups())
    codes = _H2LOAD_CODES.search(out)
    # A response counted in "status codes" may come in after h2load stopped
    # counting "succeeded": never more 2xx than successes.
    ok2xx = min(int(codes.group(1)), ok) if codes else 0
    lat = []
    try:
        with open(reqlog) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1] == "200":
                    lat.append(int(parts[2]) / 1000.0)
    except OSError:
        pass
    lat.sort()
    wall = t1 - t0
    cpu = s1 - s0
    errors = failed + errored + timeout + (ok - ok2xx)
    run.update(
        ok=ok2xx, errors=errors, rate=ok2xx / duration, server_cpu_s=cpu,
        cpu_us=cpu / ok2xx * 1e6 if ok2xx else None,
        req_per_cpu_s=ok2xx / cpu if cpu > 0 else None,
        server_util=cpu / wall if wall > 0 else 0.0,
        p50_ms=_quantile(lat, 0.50), p99_ms=_quantile(lat, 0.99),
        client_cpu=(usage.ru_utime + usage.ru_stime) / wall if wall > 0 else 0.0,
        client_busy=procs.busy_fraction(c0, c1), window_s=wall,
        others_on_server_cpu=_others(b0, b1, cpu, wall))
    run["client_saturated"] = run["client_busy"] >= CLIENT_SATURATED or run["client_cpu"] >= 0.9
    if ok2xx == 0:
        run["failure"] = "no request succeeded"
        run["errors"] = max(1, errors)
    if not server.alive():
        run["errors"] += 1
        run["failure"] = "server exited"
    return run


def idle_memory(env, server, count, log, settle=1.0):
    """RSS per idle TLS connection: a fresh server, a short warm-up so that
    lazily made state is in the baseline, then `count` connections that
    finish their handshake and stay open. Returns KiB per connection above
    the baseline."""
    run = _base(server, "idle-rss", count)
    # Warm-up: the first handshakes create what every later one shares.
    warm = [env.loadgen, "--connect", f"127.0.0.1:{server.port}", "--sni", server.cert.sni,
            "--mode", "full", "--conc", 8, "--duration", 0.3, "--warmup", 0.1]
    wp = procs.spawn(warm, env.client_cpus, log, stdout=subprocess.DEVNULL)
    try:
        wp.wait(30)
    except subprocess.TimeoutExpired:
        procs.stop(wp)
    time.sleep(settle / 2)  # the warm-up's connections finish closing
    base_rss, base_fds = server.rss_kib(), server.fds()
    cmd = [env.loadgen, "--connect", f"127.0.0.1:{server.port}", "--sni", server.cert.sni,
           "--mode", "idle", "--count", count, "--conc", 64, "--timeout", 20]
    p = procs.spawn(cmd, env.client_cpus, log, stdout=subprocess.PIPE)
    dog = _watchdog(p, 120)
    ready = None
    t0 = time.monotonic()
    try:
        for ev in _events(p):
            if ev.get("event") == "idle_ready":
                ready = ev
                break
        if ready is not None:
            # The server sees each client Finished and connects its backend
            # a moment after the client's handshake is done.
            time.sleep(settle)
            rss, fds = server.rss_kib(), server.fds()
    finally:
        dog.cancel()
        procs.stop(p)
        p.stdout.close()
    if ready is None:
        run.update(ok=0, errors=1, failure=f"idle connections never ready (exit {p.returncode})")
        return run
    opened = ready["open"]
    run.update(ok=opened, errors=ready["errors"] + (count - opened),
               open_s=time.monotonic() - t0, base_rss_kib=base_rss, rss_kib=rss,
               kib_per_conn=(rss - base_rss) / opened if opened else None,
               base_fds=base_fds, fds=fds)
    if not server.alive():
        run["errors"] += 1
        run["failure"] = "server exited"
    return run
