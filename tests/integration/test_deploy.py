"""deploy/kubernetes: the manifests are YAML of the right kinds whose parts
refer to each other correctly, the configuration in the ConfigMap passes
`postern -t` with its Secrets laid out as the kubelet mounts them (each file a
symlink into `..data`, itself a symlink to a timestamped directory swapped on
update), and a postern running that configuration reloads by itself when the
kubelet swaps a Secret, with its probes answering as the Deployment expects.

Nothing here runs Kubernetes: the kubelet's part is played by
`kubelet_volume`, which writes a volume the way its AtomicWriter does."""

import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

import clients
from conftest import REPO, run_postern

DEPLOY = REPO / "deploy" / "kubernetes"
MANIFESTS = ("deployment.yaml", "service.yaml", "configmap.yaml", "secrets.yaml", "pdb.yaml",
             "redis.yaml")


def load_manifests():
    docs = []
    for name in MANIFESTS:
        for doc in yaml.safe_load_all((DEPLOY / name).read_text()):
            if doc is not None:
                docs.append(doc)
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def pod_spec(objs, name="postern"):
    return objs[("Deployment", name)]["spec"]["template"]["spec"]


def postern_config(objs):
    return objs[("ConfigMap", "postern-config")]["data"]["postern.yaml"]


def duration_s(text):
    m = re.fullmatch(r"(\d+)(ms|s|m)", text)
    assert m, text
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


# ------------------------------------------------------------ manifests --

def test_manifests_have_the_kinds_and_names():
    objs = load_manifests()
    assert set(objs) == {
        ("Deployment", "postern"), ("Service", "postern"), ("ConfigMap", "postern-config"),
        ("Secret", "postern-tls"), ("Secret", "postern-tickets"),
        ("PodDisruptionBudget", "postern"), ("Deployment", "postern-redis"),
        ("Service", "postern-redis"),
    }
    api = {"Deployment": "apps/v1", "Service": "v1", "ConfigMap": "v1", "Secret": "v1",
           "PodDisruptionBudget": "policy/v1"}
    for (kind, name), obj in objs.items():
        assert obj["apiVersion"] == api[kind], (kind, name)


def test_secrets_commit_no_key_material():
    objs = load_manifests()
    assert objs[("Secret", "postern-tls")]["type"] == "kubernetes.io/tls"
    for key in (("Secret", "postern-tls"), ("Secret", "postern-tickets")):
        for field, value in objs[key]["data"].items():
            assert value == "", f"{key[1]}.{field} must stay empty in the repository"


def test_deployment_probes_drain_and_mounts():
    objs = load_manifests()
    cfg = yaml.safe_load(postern_config(objs))
    spec = pod_spec(objs)
    (c,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    # The ports the container declares are the ones the configuration listens on.
    assert ports["admin"] == int(cfg["admin"]["listen"].rsplit(":", 1)[1])
    assert ports["https"] == int(cfg["listeners"][0]["listen"].rsplit(":", 1)[1])
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    # preStop sleeps so that the Service drops the pod before SIGTERM; the
    # grace period covers the sleep and postern's own drain.
    cmd = c["lifecycle"]["preStop"]["exec"]["command"]
    assert cmd[0] == "/bin/sleep"
    grace = spec["terminationGracePeriodSeconds"]
    assert grace > int(cmd[1]) + duration_s(cfg["shutdown_timeout"])
    assert "requests" in c["resources"] and "limits" in c["resources"]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    # Every file the configuration names lives in a read-only, whole-directory
    # mount (a subPath mount never sees a Secret update).
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    for m in mounts.values():
        assert m["readOnly"] is True and "subPath" not in m
    tls = cfg["listeners"][0]["tls"]
    paths = [tls["certificates"][0]["cert"], tls["certificates"][0]["key"], tls["ticket_keys"]]
    for path in paths:
        mount = mounts[str(Path(path).parent)]
        assert "secret" in volumes[mount["name"]], path
    assert cfg["watch"] is True
    secrets = {v["secret"]["secretName"] for v in volumes.values() if "secret" in v}
    assert secrets == {"postern-tls", "postern-tickets"}
    assert volumes["config"]["configMap"]["name"] == "postern-config"
    assert c["args"] == ["-c", str(Path(mounts["/etc/postern/config"]["mountPath"]) /
                                   "postern.yaml")]


def test_selectors_match_the_pods():
    objs = load_manifests()
    for app in ("postern", "postern-redis"):
        labels = objs[("Deployment", app)]["spec"]["template"]["metadata"]["labels"]
        sel = objs[("Service", app)]["spec"]["selector"]
        assert all(labels.get(k) == v for k, v in sel.items()), app
        names = {p["name"] for c in pod_spec(objs, app)["containers"] for p in c["ports"]}
        for p in objs[("Service", app)]["spec"]["ports"]:
            assert p["targetPort"] in names, (app, p)
    pdb = objs[("PodDisruptionBudget", "postern")]["spec"]["selector"]["matchLabels"]
    labels = objs[("Deployment", "postern")]["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in pdb.items())
    # The configuration's Redis is the Redis Service.
    cfg = yaml.safe_load(postern_config(objs))
    host, port = cfg["early_data_replay"]["redis"]["address"].rsplit(":", 1)
    assert host == "postern-redis"
    assert int(port) == objs[("Service", "postern-redis")]["spec"]["ports"][0]["port"]


def test_containerfile_uses_the_projects_build():
    text = (DEPLOY / "Containerfile").read_text()
    assert re.search(r"^FROM debian:12 AS build$", text, re.M)
    assert ".ci/deps.sh build" in text and "make" in text
    runtime = re.search(r"apt-get install -y --no-install-recommends ([^&\\]+)", text).group(1)
    if shutil.which("apt-cache") is None:
        pytest.skip("no apt-cache to check the runtime packages exist")
    for pkg in runtime.split():
        p = subprocess.run(["apt-cache", "show", pkg], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        assert p.returncode == 0, f"{pkg} is not a Debian 12 package"


# ------------------------------------------- the kubelet's volume layout --

def kubelet_volume(directory, files, mode=0o440):
    """Writes files ({name: bytes}) as the kubelet's AtomicWriter does: into
    a new timestamped directory, then `..data` swapped to it by rename, and
    each name a symlink to `..data/name`; the old directory removed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / (time.strftime("..%Y_%m_%d_%H_%M_%S.") + str(time.monotonic_ns()))
    stamp.mkdir()
    for name, data in files.items():
        (stamp / name).write_bytes(data)
        os.chmod(stamp / name, mode)
    data_link = directory / "..data"
    old = os.readlink(data_link) if data_link.is_symlink() else None
    tmp = directory / "..data_tmp"
    tmp.symlink_to(stamp.name)
    os.rename(tmp, data_link)
    for name in files:
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(Path("..data") / name)
    if old is not None:
        shutil.rmtree(directory / old)


def mounted_config(objs, root, pki, redis_port, backend_port, https_port=8443, admin_port=9090):
    """The ConfigMap's configuration with its mount paths under root and its
    Services replaced by local ones (the Kubernetes names do not resolve here).
    The test PKI's root is private: the chain is checked against it (a real
    certificate against the image's system store)."""
    text = postern_config(objs).replace("/etc/postern/", f"{root}/")
    text = re.sub(r"(?m)^( *)versions: \[tls1\.3\]\n",
                  lambda m: f"{m.group(0)}{m.group(1)}ca_file: {pki.root}\n", text, count=1)
    text = text.replace('"postern-redis:6379"', f'"127.0.0.1:{redis_port}"')
    text = text.replace('"app:8080"', f'"localhost:{backend_port}"')
    text = text.replace('"0.0.0.0:8443"', f'"127.0.0.1:{https_port}"')
    text = text.replace('"0.0.0.0:9090"', f'"127.0.0.1:{admin_port}"')
    return text


def lay_out_secrets(root, pki, postern_bin, name="localhost"):
    key = subprocess.run([postern_bin, "ticket-key"], stdout=subprocess.PIPE, check=True).stdout
    kubelet_volume(root / "tls", {"tls.crt": pki.chain(name).read_bytes(),
                                  "tls.key": pki.key(name).read_bytes()})
    kubelet_volume(root / "tickets", {"tickets.keys": key})


def test_configmap_passes_check_with_kubelet_mounts(postern_bin, pki, tmp_path):
    objs = load_manifests()
    root = tmp_path / "etc-postern"
    lay_out_secrets(root, pki, postern_bin)
    kubelet_volume(root / "config", {"postern.yaml": mounted_config(
        objs, root, pki, redis_port=clients.free_port(),
        backend_port=clients.free_port()).encode()})
    p = run_postern(postern_bin, "-t", "-c", root / "config" / "postern.yaml")
    assert p.returncode == 0, p.stdout + p.stderr
    # Mode 0440 with the pod's own group (fsGroup) is how a non-root pod
    # reads a Secret: no warning about who can read the ticket keys.
    assert "can be read by group" not in p.stdout + p.stderr


def get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def served_serial(port):
    ctx = clients.client_context(verify=False)
    with clients.connect_tls(port, "localhost", ctx) as s:
        return s.getpeercert(binary_form=True)


@pytest.mark.deadline(90)
def test_secret_update_reloads_the_running_pod(postern_bin, pki, tmp_path, start_postern,
                                               http_servers):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (.ci/deps.sh installs it)")
    objs = load_manifests()
    redis_port = clients.free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        backend = http_servers.http()
        https, admin = clients.free_port(), clients.free_port()
        root = tmp_path / "etc-postern"
        lay_out_secrets(root, pki, postern_bin)
        config = mounted_config(objs, root, pki, redis_port, backend.port, https, admin)
        p = start_postern(config, [https, admin])
        assert get(f"http://127.0.0.1:{admin}/healthz") == 200
        deadline = time.monotonic() + 10
        while get(f"http://127.0.0.1:{admin}/readyz") != 200:
            assert time.monotonic() < deadline, "/readyz never turned 200"
            time.sleep(0.1)
        before = served_serial(https)
        # cert-manager renews: the Secret changes, the kubelet swaps ..data.
        kubelet_volume(root / "tls", {"tls.crt": pki.chain("example.test").read_bytes(),
                                      "tls.key": pki.key("example.test").read_bytes()})
        deadline = time.monotonic() + 15
        while served_serial(https) == before:
            assert time.monotonic() < deadline, "the swapped Secret was not loaded"
            time.sleep(0.2)
        assert "reload" in p.stderr()
    finally:
        redis.terminate()
        redis.wait(10)
