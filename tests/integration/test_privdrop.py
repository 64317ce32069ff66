"""Giving up root (`user:` and `group:`): postern binds its listeners and
reads its keys as root, then becomes nobody/nogroup with CAP_NET_BIND_SERVICE
alone, in every thread (capabilities are per thread on Linux); a reload
reads its files as that user, can still bind a port below 1024, and fails
cleanly, saying why, on a key only root can read. The tests run as root."""

import grp
import os
import pwd
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from conftest import PosternFactory, run_postern
from clients import HOST, client_context, config, connect_tls, free_port, listener, recv_exact
from test_reload import Log, sighup

CAP_NET_BIND_SERVICE = 1 << 10

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")


def nobody():
    return pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid


@pytest.fixture
def world(pki):
    """A directory every user may read (pytest's tmp_path is root's alone,
    0700): the config, the PKI files it names, and postern's stderr."""
    d = Path(tempfile.mkdtemp(prefix="postern-priv-", dir="/tmp"))
    os.chmod(d, 0o755)
    for name in ("example.test", "localhost"):
        shutil.copy(pki.chain(name), d / f"{name}.chain.pem")
        shutil.copy(pki.key(name), d / f"{name}.key.pem")
        os.chmod(d / f"{name}.key.pem", 0o644)
    shutil.copy(pki.root, d / "root.pem")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def start_world(postern_bin, world):
    f = PosternFactory(postern_bin, world / "run")
    (world / "run").mkdir()
    os.chmod(world / "run", 0o755)
    yield f
    f.finish()


def tls(world, name="example.test"):
    return {"versions": ["tls1.3"],
            "certificates": [{"cert": str(world / f"{name}.chain.pem"),
                              "key": str(world / f"{name}.key.pem")}],
            "ca_file": str(world / "root.pem")}


def status(pid, task=None):
    path = f"/proc/{pid}/status" if task is None else f"/proc/{pid}/task/{task}/status"
    fields = {}
    for line in Path(path).read_text().splitlines():
        k, _, v = line.partition(":")
        fields[k] = v.split()
    return fields


def check_dropped(p):
    """Every thread of p is nobody/nogroup with CAP_NET_BIND_SERVICE alone.
    Returns the number of threads seen."""
    uid, gid = nobody()
    tasks = os.listdir(f"/proc/{p.pid}/task")
    for t in tasks:
        st = status(p.pid, t)
        assert st["Uid"] == [str(uid)] * 4, (t, st["Uid"])
        assert st["Gid"] == [str(gid)] * 4, (t, st["Gid"])
        assert st["Groups"] == [str(gid)], (t, st["Groups"])
        caps = {k: int(st[k][0], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
        assert caps == {"CapInh": 0, "CapPrm": CAP_NET_BIND_SERVICE, "CapEff": CAP_NET_BIND_SERVICE,
                        "CapBnd": CAP_NET_BIND_SERVICE, "CapAmb": 0}, (t, st.get("Name"), caps)
    return len(tasks)


def echo_roundtrip(port, pki):
    with connect_tls(port, "example.test", client_context(pki)) as s:
        s.sendall(b"ping")
        assert recv_exact(s, 4) == b"ping"


def free_low_port():
    """A free port in 900..1000, for a listener only CAP_NET_BIND_SERVICE
    may bind."""
    import socket
    for port in range(900, 1000):
        s = socket.socket()
        try:
            s.bind((HOST, port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    pytest.skip("no free port in 900..1000")


@pytest.mark.deadline(90)
def test_drop_reload_low_port_and_unreadable_key(pki, world, start_world, backend):
    echo = backend.echo()
    port = free_port()
    first = [listener("one", port, echo.addr, tls=tls(world))]
    p = start_world(config(first, user="nobody", group="nogroup"), [port])
    log = Log(p)
    log.wait(r"running as user nobody \(uid \d+\), group nogroup")
    assert "running as root" not in p.stderr()
    n = check_dropped(p)
    assert n >= 3, f"expected the main thread and 2 workers, saw {n} threads"
    echo_roundtrip(port, pki)

    # A reload (as nobody) adding a listener below 1024. Its build ran on a
    # thread of its own, made by the main thread after the drop and gone
    # now; every thread there is holds no more than the others.
    low = free_low_port()
    second = first + [listener("low", low, echo.addr, tls=tls(world))]
    p.config_path.write_text(config(second, user="nobody", group="nogroup"))
    sighup(p, log, "ok")
    echo_roundtrip(low, pki)
    assert check_dropped(p) >= n

    # A key only root can read: the reload fails, says why, and the running
    # generation serves on.
    key = world / "example.test.key.pem"
    os.chmod(key, 0o600)
    m = sighup(p, log, "failed")
    assert "not readable by user nobody" in m.group("cause"), m.group(0)
    assert str(key) in m.group("cause"), m.group(0)
    echo_roundtrip(port, pki)
    echo_roundtrip(low, pki)
    check_dropped(p)
    os.chmod(key, 0o644)
    sighup(p, log, "ok")


def test_check_says_what_the_user_cannot_read(postern_bin, world, backend):
    echo = backend.echo()
    cfg = world / "check.yaml"
    cfg.write_text(config([listener("one", free_port(), echo.addr, tls=tls(world))],
                          user="nobody"))
    os.chmod(cfg, 0o644)
    r = run_postern(postern_bin, "-t", "-c", cfg)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "user nobody can read every file a reload reads" in r.stdout

    os.chmod(world / "example.test.key.pem", 0o600)
    r = run_postern(postern_bin, "-t", "-c", cfg)
    assert r.returncode == 1, r.stdout + r.stderr
    want = f"error: {world}/example.test.key.pem: not readable by user nobody: Permission denied"
    assert want in r.stdout, r.stdout
    assert "configuration has 1 error" in r.stdout

    # An access log only root may write: SIGUSR1 could not reopen it.
    log = world / "access.log"
    log.write_text("")
    os.chmod(log, 0o600)
    os.chmod(world / "example.test.key.pem", 0o644)
    cfg.write_text(config([listener("one", free_port(), echo.addr, tls=tls(world), mode="http",
                                    access_log=str(log))], user="nobody"))
    r = run_postern(postern_bin, "-t", "-c", cfg)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"error: {log}: not writable by user nobody: Permission denied" in r.stdout, r.stdout


def test_root_without_user_warns_once(pki, start_postern, backend):
    echo = backend.echo()
    port = free_port()
    p = start_postern(config([listener("one", port, echo.addr, pki)]), [port])
    p.signal(signal.SIGHUP)
    Log(p).wait(r"reload ok")
    assert p.stderr().count("running as root: set user:") == 1, p.stderr()


@pytest.mark.parametrize("top, want", [
    ({"user": "no-such-user-here"},
     r'^{path}:\d+:7: user: no user "no-such-user-here" on this system; .*'
     r"adduser --system --group --no-create-home no-such-user-here`$"),
    ({"user": "nobody", "group": "no-such-group-here"},
     r'^{path}:\d+:8: group: no group "no-such-group-here" on this system; .*$'),
    ({"group": "nogroup"},
     r'^{path}:\d+:8: group: group "nogroup" without user: .*add user: too, or remove group$'),
    ({"user": "root"}, r'^{path}:\d+:7: user: user "root" is uid 0: .*$'),
    ({"log_format": "xml"}, r'^{path}:\d+:13: log_format: .*"xml".*$'),
])
def test_bad_user_group_keys(postern_bin, tmp_path, pki, top, want):
    import re
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(config([listener("one", free_port(), "127.0.0.1:9", pki)], **top))
    r = run_postern(postern_bin, "-t", "-c", cfg)
    assert r.returncode == 1
    line = r.stderr.strip()
    assert re.match(want.format(path=re.escape(str(cfg))), line), line


@pytest.fixture
def temp_user():
    """Makes system users for one test (useradd), removed afterwards: the
    shapes of user this machine has none of, such as RHEL's operator (primary
    group gid 0). Ask for it before start_world, so that postern has
    stopped when the user is removed."""
    import subprocess
    made = []

    def make(name, *args):
        subprocess.run(["userdel", name], capture_output=True)  # left by an interrupted run
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        *args, name], check=True, capture_output=True)
        made.append(name)
        return name
    yield make
    for name in made:
        subprocess.run(["userdel", name], capture_output=True)


def test_user_with_gid0_primary_group_refused(postern_bin, tmp_path, pki, temp_user):
    import re
    name = temp_user("pst-gid0-test", "--gid", "0")
    cfg = tmp_path / "gid0.yaml"
    cfg.write_text(config([listener("one", free_port(), "127.0.0.1:9", pki)], user=name))
    r = run_postern(postern_bin, "-t", "-c", cfg)
    assert r.returncode == 1, r.stdout + r.stderr
    want = (rf'^{re.escape(str(cfg))}:\d+:7: user: user "{name}" has gid 0 as its primary '
            r"group: .*add group: .*$")
    assert re.match(want, r.stderr.strip()), r.stderr
    # With group: naming another group, the same user is fine.
    cfg.write_text(config([listener("one", free_port(), "127.0.0.1:9", pki)], user=name,
                          group="nogroup"))
    r = run_postern(postern_bin, "-t", "-c", cfg)
    assert "has gid 0" not in r.stdout + r.stderr, r.stdout + r.stderr


@pytest.mark.deadline(60)
def test_root_group_membership_not_kept(temp_user, pki, world, start_world, backend):
    """A user listed in /etc/group as a member of root's group: postern
    runs without gid 0 among its supplementary groups."""
    name = temp_user("pst-rootgrp-test", "--gid", "nogroup", "--groups", "root")
    echo = backend.echo()
    port = free_port()
    p = start_world(config([listener("one", port, echo.addr, tls=tls(world))], user=name), [port])
    Log(p).wait(rf"running as user {name} \(uid \d+\)")
    for t in os.listdir(f"/proc/{p.pid}/task"):
        st = status(p.pid, t)
        assert "0" not in st["Groups"], (t, st["Groups"])
        assert st["Gid"] == [str(grp.getgrnam("nogroup").gr_gid)] * 4, (t, st["Gid"])
    echo_roundtrip(port, pki)


def test_drop_refused_without_thread_count(postern_bin, world, backend):
    """/proc/self/status without its Threads: line (here /dev/null mounted
    over it, in a mount namespace of its own): the drop cannot tell that it
    is alone, and refuses rather than skipping the check."""
    import subprocess
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    echo = backend.echo()
    cfg = world / "threads.yaml"
    cfg.write_text(config([listener("one", free_port(), echo.addr, tls=tls(world))],
                          user="nobody"))
    os.chmod(cfg, 0o644)
    # Not -t: its drop runs in a child, with a /proc/self of another pid.
    script = 'mount --bind /dev/null /proc/$$/status && exec "$0" -c "$1"'
    try:
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                            str(postern_bin), str(cfg)], capture_output=True, text=True,
                           timeout=15)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"postern started without knowing its thread count: {e.stderr}")
    if r.returncode != 0 and "mount" in r.stderr and "postern" not in r.stderr:
        pytest.skip(f"cannot mount over /proc here: {r.stderr}")
    assert r.returncode == 1, r.stderr
    assert "cannot become user nobody" in r.stderr and "counting threads" in r.stderr, r.stderr


def test_check_creates_no_access_log(postern_bin, world, backend):
    """`postern -t` as root leaves no file behind (it used to create the
    access log as root, then report it unwritable by the user), and says
    when the user could not create it."""
    echo = backend.echo()
    logs = world / "logs"
    logs.mkdir()
    os.chmod(logs, 0o755)  # root's: nobody may not create a file in it
    access = logs / "access.log"
    cfg = world / "check.yaml"
    cfg.write_text(config([listener("one", free_port(), echo.addr, tls=tls(world), mode="http",
                                    access_log=str(access))], user="nobody"))
    os.chmod(cfg, 0o644)
    r = run_postern(postern_bin, "-t", "-c", cfg)
    assert not access.exists(), "postern -t created the access log"
    assert r.returncode == 1, r.stdout + r.stderr
    assert (f"error: {access}: cannot be created by user nobody: directory {logs}: "
            "Permission denied") in r.stdout, r.stdout

    os.chown(logs, *nobody())
    r = run_postern(postern_bin, "-t", "-c", cfg)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not access.exists(), "postern -t created the access log"


@pytest.mark.deadline(60)
def test_access_log_created_as_root_belongs_to_user(pki, world, start_world, backend):
    """Started as root with user:, the access log postern creates is the
    user's, so that SIGUSR1 can reopen it after the drop."""
    echo = backend.echo()
    port = free_port()
    access = world / "run" / "access.log"
    p = start_world(config([listener("one", port, echo.addr, tls=tls(world), mode="http",
                                     access_log=str(access))], user="nobody", group="nogroup"),
                    [port])
    log = Log(p)
    log.wait(r"running as user nobody")
    st = access.stat()
    assert (st.st_uid, st.st_gid) == nobody(), (st.st_uid, st.st_gid)
    mark = log.mark()
    p.signal(signal.SIGUSR1)
    m = log.wait(r"SIGUSR1: (1 access log file reopened|cannot reopen.*)$", mark)
    assert m.group(1) == "1 access log file reopened", m.group(0)


def test_group_with_a_long_entry(postern_bin, tmp_path, pki):
    """A group whose /etc/group line is longer than getgrnam_r's usual
    buffer (it lists many members): looked up, not "cannot look up"."""
    import subprocess
    name = "pst-biggrp-test"
    subprocess.run(["groupdel", name], capture_output=True)
    subprocess.run(["groupadd", "--system", name], check=True, capture_output=True)
    try:
        subprocess.run(["gpasswd", "-M", ",".join(["nobody"] * 2000), name], check=True,
                       capture_output=True)
        cfg = tmp_path / "big.yaml"
        cfg.write_text(config([listener("one", free_port(), "127.0.0.1:9", pki)], user="nobody",
                              group=name))
        r = run_postern(postern_bin, "-t", "-c", cfg)
        assert "cannot look up group" not in r.stderr, r.stderr
        # Parsed (the files in tmp_path are root's alone: nobody's check fails).
        assert r.stdout.startswith(f"configuration {cfg}: 1 listener"), r.stdout + r.stderr
    finally:
        subprocess.run(["groupdel", name], capture_output=True)


@pytest.mark.deadline(60)
def test_started_as_user_with_another_group_warns(postern_bin, world, backend):
    """Started as the user already (systemd's User=) but not with the
    group group: names: postern cannot change it and says so, at the group
    key's line, rather than serving silently without that group."""
    import re
    import subprocess
    import time
    if shutil.which("setpriv") is None:
        pytest.skip("no setpriv(1)")
    echo = backend.echo()
    port = free_port()
    cfg = world / "asuser.yaml"
    cfg.write_text(config([listener("one", port, echo.addr, tls=tls(world))], user="nobody",
                          group="users", workers=1))
    os.chmod(cfg, 0o644)
    err = world / "asuser.err"
    uid, gid = nobody()
    with open(err, "w") as f:
        proc = subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                                 str(postern_bin), "-c", str(cfg)], stdout=subprocess.DEVNULL,
                                stderr=f, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while " ready: " not in err.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
        text = err.read_text()
        assert proc.poll() is None, text
        want = (rf"^\S+ WARN {re.escape(str(cfg))}:\d+:8: group: postern runs as gid {gid}, not "
                rf"as group users \(gid {grp.getgrnam('users').gr_gid}\)")
        assert re.search(want, text, re.M), text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, err.read_text()
