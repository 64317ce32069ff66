"""`make install` and `make uninstall` into a DESTDIR: the binary, the two
man pages (rendered by groff -ww without a warning), the systemd unit with
the install's paths (checked by systemd-analyze verify, man pages included),
the logrotate file, the reference and the example configuration, which
never overwrites one already there."""

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

FILES = {  # path under DESTDIR (PREFIX=/usr/local) -> mode
    "usr/local/sbin/postern": 0o755,
    "usr/local/share/man/man8/postern.8": 0o644,
    "usr/local/share/man/man5/postern.yaml.5": 0o644,
    "usr/local/lib/systemd/system/postern.service": 0o644,
    "etc/logrotate.d/postern": 0o644,
    "etc/postern/postern.yaml": 0o640,
    "usr/local/share/doc/postern/config.md": 0o644,
    "usr/local/share/doc/postern/README.md": 0o644,
    "usr/local/share/doc/postern/examples/postern.yaml": 0o644,
}


def make(*args, timeout=600):
    r = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), *args],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"make {' '.join(args)} failed:\n{r.stdout[-4000:]}"
    return r.stdout


def files_under(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if not p.is_dir())


@pytest.mark.deadline(600)
def test_install_uninstall(tmp_path):
    dest = tmp_path / "stage"
    make("install", f"DESTDIR={dest}", "PREFIX=/usr/local")
    assert files_under(dest) == sorted(FILES), files_under(dest)
    for rel, mode in FILES.items():
        got = stat.S_IMODE((dest / rel).stat().st_mode)
        assert got == mode, f"{rel}: mode {got:o}, expected {mode:o}"

    r = subprocess.run([str(dest / "usr/local/sbin/postern"), "--version"],
                       stdout=subprocess.PIPE, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout.startswith("postern "), r.stdout
    unit = (dest / "usr/local/lib/systemd/system/postern.service").read_text()
    assert "ExecStart=/usr/local/sbin/postern -c /etc/postern/postern.yaml\n" in unit
    assert (dest / "etc/postern/postern.yaml").read_text() == \
        (REPO / "conf/postern.example.yaml").read_text()

    # A configuration of one's own survives a second install, and uninstall.
    conf = dest / "etc/postern/postern.yaml"
    conf.write_text(conf.read_text() + "# mine\n")
    out = make("install", f"DESTDIR={dest}", "PREFIX=/usr/local")
    assert "keeping" in out and conf.read_text().endswith("# mine\n")
    out = make("uninstall", f"DESTDIR={dest}", "PREFIX=/usr/local")
    assert files_under(dest) == ["etc/postern/postern.yaml"], files_under(dest)
    assert "changed from the example" in out
    conf.unlink()

    # Another prefix: the unit follows it.
    make("install", f"DESTDIR={dest}", "PREFIX=/usr")
    unit = (dest / "usr/lib/systemd/system/postern.service").read_text()
    assert "ExecStart=/usr/sbin/postern -c /etc/postern/postern.yaml\n" in unit
    make("uninstall", f"DESTDIR={dest}", "PREFIX=/usr")
    assert files_under(dest) == [], files_under(dest)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = tmp_path_factory.mktemp("install") / "stage"
    make("install", f"DESTDIR={dest}", "PREFIX=/usr/local")
    return dest


@pytest.mark.deadline(600)
@pytest.mark.parametrize("page", ["man8/postern.8", "man5/postern.yaml.5"])
def test_man_pages_render_without_warnings(installed, page):
    path = installed / "usr/local/share/man" / page
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed (Debian: apt-get install groff-base)")
    r = subprocess.run(["groff", "-ww", "-mandoc", "-Tutf8", str(path)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    text = re.sub(".\b", "", r.stdout)  # grotty's overstriking (bold, underline)
    assert "NAME" in text and "SEE ALSO" in text, text
    if shutil.which("man"):
        r = subprocess.run(["man", "-l", str(path)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=30,
                           env={**os.environ, "MANPAGER": "cat", "PAGER": "cat"})
        assert r.returncode == 0 and r.stderr == "", r.stderr


@pytest.mark.deadline(600)
def test_installed_unit_verifies_with_its_man_pages(installed, tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    unit = (installed / "usr/local/lib/systemd/system/postern.service").read_text()
    # verify checks that ExecStart's program exists: the staged one.
    d = tmp_path / "units"
    d.mkdir()
    (d / "postern.service").write_text(
        unit.replace("/usr/local/sbin/postern", str(installed / "usr/local/sbin/postern")))
    r = subprocess.run([analyze, "verify", str(d / "postern.service")], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60,
                       env={**os.environ, "MANPATH": str(installed / "usr/local/share/man"),
                            "SYSTEMD_LOG_LEVEL": "warning"})
    if r.returncode != 0 and "System has not been booted with systemd" in r.stdout:
        pytest.skip(f"systemd-analyze cannot run in this container: {r.stdout.strip()[:300]}")
    problems = [line for line in r.stdout.splitlines() if "postern.service" in line]
    assert r.returncode == 0 and not problems, r.stdout


@pytest.mark.deadline(600)
def test_installed_logrotate_file_parses(installed, tmp_path):
    if shutil.which("logrotate") is None:
        pytest.skip("logrotate is not installed (Debian: apt-get install logrotate)")
    text = (installed / "etc/logrotate.d/postern").read_text()
    logs = tmp_path / "log"
    logs.mkdir()
    (logs / "access.log").write_text("x\n")
    conf = tmp_path / "lr.conf"
    conf.write_text(text.replace("/var/log/postern", str(logs))
                    .replace("create 0640 postern postern", "create 0640 root root"))
    r = subprocess.run(["logrotate", "-d", "-s", str(tmp_path / "state"), str(conf)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    assert r.returncode == 0 and "error" not in r.stdout.lower(), r.stdout
    assert f"considering log {logs}/access.log" in r.stdout, r.stdout
