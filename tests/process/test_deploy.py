# ctest-labels: heavy
# (normal build only: the image is built without sanitizers, and an ASan
# binary's ldd lists libasan/libubsan, which the image rightly lacks)
"""test_deploy.py -- deploy/ cannot go stale: the container image's package
lists against the built binary, and the Kubernetes manifests against schemas
written here (no schema is fetched) and against the agent itself.

- Runtime stage: every shared library `ldd build/shoal` lists comes from a
  Debian package the stage installs, or one those depend on, or a package of
  priority "required" (in every Debian base image); every direct NEEDED
  library's package is installed by name.
- Build stage: the -dev package of every library CMakeLists.txt looks for,
  protoc-c's package, cmake, pkg-config and a compiler.
- deploy/kubernetes/*.yaml: each document validates against a JSON Schema for
  its kind (python3-jsonschema), then the cross-references hold (selectors,
  volumes, ConfigMap and Secret names, the headless Service's ports), and the
  agent accepts the configuration the DaemonSet gives it (--print-config with
  the ConfigMap's file, the entrypoint's flags and the environment).

Run: /usr/bin/python3 test_deploy.py --shoal build/shoal
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import check, fail, run_tests, test  # noqa: E402

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKERFILE = os.path.join(SRC, "deploy", "Dockerfile")
K8S = os.path.join(SRC, "deploy", "kubernetes")


def sh(argv, **kw):
    p = subprocess.run(argv, capture_output=True, timeout=60, **kw)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


# ---------------------------------------------------------------- Dockerfile

def stages():
    """[(name, [installed packages], [lines])] of the Dockerfile."""
    text = open(DOCKERFILE).read().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("FROM "):
            m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
            out.append({"base": m.group(1), "name": m.group(2) or "final", "pkgs": [],
                        "lines": []})
        elif out:
            out[-1]["lines"].append(line)
            for m in re.finditer(r"apt-get install ((?:-\S+\s+)*)([^&;]+)", line):
                out[-1]["pkgs"] += [p for p in m.group(2).split() if not p.startswith("-")]
    return out


def _candidates(path):
    cands = [path, os.path.realpath(path)]
    for p in list(cands):
        cands.append(p[4:] if p.startswith("/usr/") else "/usr" + p)
    return cands


def owners(paths):
    """path -> the Debian package owning it (usrmerge: /lib and /usr/lib both
    tried), with one dpkg-query for all (each call reads dpkg's whole file
    database)."""
    allc = sorted({c for p in paths for c in _candidates(p)})
    _, out, _ = sh(["dpkg-query", "-S"] + allc)  # exit 1 when some are not found
    found = {}
    for line in out.splitlines():
        pkgs, _, path = line.partition(": ")
        found[path.strip()] = pkgs.split(",")[0].split(":")[0].strip()
    res = {}
    for p in paths:
        hit = next((found[c] for c in _candidates(p) if c in found), None)
        check(hit, "no Debian package owns %s" % p)
        res[p] = hit
    return res


def owner(path):
    return owners([path])[path]


_DB = None


def package_db():
    """name -> (priority, essential, [depends]) of every installed package,
    from one dpkg-query."""
    global _DB
    if _DB is None:
        rc, out, err = sh(["dpkg-query", "-W",
                           "-f=${Package}\t${Priority}\t${Essential}\t${Depends},"
                           "${Pre-Depends}\n"])
        check(rc == 0, err)
        _DB = {}
        for line in out.splitlines():
            name, prio, ess, deps = (line.split("\t") + ["", "", ""])[:4]
            names = [n.strip().split(" ")[0].split(":")[0]
                     for alt in deps.split(",") for n in alt.split("|")]
            _DB[name] = (prio, ess == "yes", [n for n in names if n])
    return _DB


def depends_closure(pkgs):
    """pkgs and everything they depend on (installed here), recursively."""
    db, seen, todo = package_db(), set(), list(pkgs)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        todo += db.get(p, ("", False, []))[2]
    return seen


def base_packages():
    """What every Debian base image holds: priority required, essential, and
    what those depend on."""
    db = package_db()
    return depends_closure([n for n, (prio, ess, _) in db.items() if prio == "required" or ess])


@test("the image's runtime packages provide every library ldd shows for build/shoal")
def t_runtime_deps(h):
    st = stages()
    check(len(st) == 2, "want a build and a runtime stage: %r" % [s["name"] for s in st])
    runtime = st[-1]
    check(runtime["base"] == "debian:bookworm-slim", runtime["base"])
    rc, out, err = sh(["ldd", h.shoal])
    check(rc == 0, err)
    libs = re.findall(r"=>\s+(/\S+)", out)
    check(len(libs) >= 8, out)
    rc, needed, _ = sh(["readelf", "-d", h.shoal])
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]", needed)
    closure = depends_closure(runtime["pkgs"])
    base = base_packages()
    missing = []
    pkg_of = owners(libs)
    for lib in libs:
        pkg = pkg_of[lib]
        direct = os.path.basename(lib) in needed
        if direct and pkg not in runtime["pkgs"] and pkg not in base:
            missing.append("%s (%s, linked directly) is not installed by name" % (pkg, lib))
        elif pkg not in closure and pkg not in base:
            missing.append("%s (%s) is neither installed nor a dependency" % (pkg, lib))
    check(not missing, lambda: "deploy/Dockerfile runtime stage:\n  " + "\n  ".join(missing))
    h.note("runtime: %d libraries from %d packages checked" % (len(libs), len(runtime["pkgs"])))


@test("the image's build stage installs every package the build needs")
def t_build_deps(h):
    build = stages()[0]
    cml = open(os.path.join(SRC, "CMakeLists.txt")).read()
    want = {}
    for mod in re.findall(r"pkg_check_modules\(\S+ REQUIRED IMPORTED_TARGET (\S+)\)", cml):
        rc, d, err = sh(["pkg-config", "--variable=pcfiledir", mod])
        check(rc == 0, "pkg-config %s: %s" % (mod, err))
        want[mod] = owner(os.path.join(d.strip(), mod + ".pc"))
    for header in re.findall(r"find_path\(\S+ (\S+\.h) REQUIRED\)", cml):
        want[header] = owner(os.path.join("/usr/include", header))
    for prog in re.findall(r"find_program\(\S+ (\S+) REQUIRED\)", cml):
        want[prog] = owner(shutil.which(prog))
    check(len(want) >= 7, want)
    missing = ["%s (for %s)" % (p, what) for what, p in want.items() if p not in build["pkgs"]]
    for tool in ("cmake", "pkg-config", "gcc", "make"):
        if tool not in build["pkgs"]:
            missing.append(tool)
    check(not missing, lambda: "deploy/Dockerfile build stage lacks: " + ", ".join(missing))


# ---------------------------------------------------------------- Kubernetes

NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
META = {"type": "object", "required": ["name"], "properties": {
    "name": NAME, "namespace": NAME, "labels": LABELS,
    "annotations": LABELS}, "additionalProperties": False}
QUANTITY = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi)?$"}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
PROTO = {"enum": ["TCP", "UDP", "SCTP"]}
PROBE = {"type": "object", "minProperties": 1, "additionalProperties": False, "properties": {
    "exec": {"type": "object", "required": ["command"], "additionalProperties": False,
             "properties": {"command": {"type": "array", "minItems": 1,
                                        "items": {"type": "string"}}}},
    "httpGet": {"type": "object", "required": ["port"]},
    "initialDelaySeconds": {"type": "integer", "minimum": 0},
    "periodSeconds": {"type": "integer", "minimum": 1},
    "timeoutSeconds": {"type": "integer", "minimum": 1},
    "failureThreshold": {"type": "integer", "minimum": 1},
    "successThreshold": {"type": "integer", "minimum": 1}}}
RESOURCES = {"type": "object", "required": ["requests"], "additionalProperties": False,
             "properties": {
                 "requests": {"type": "object", "required": ["cpu", "memory"],
                              "additionalProperties": False,
                              "properties": {"cpu": QUANTITY, "memory": QUANTITY}},
                 "limits": {"type": "object", "additionalProperties": False,
                            "properties": {"cpu": QUANTITY, "memory": QUANTITY}}}}
ENV = {"type": "array", "items": {"type": "object", "required": ["name"],
                                  "additionalProperties": False, "properties": {
    "name": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
    "value": {"type": "string"},
    "valueFrom": {"type": "object", "additionalProperties": False, "properties": {
        "fieldRef": {"type": "object", "required": ["fieldPath"],
                     "properties": {"fieldPath": {"enum": [
                         "spec.nodeName", "status.hostIP", "status.podIP",
                         "metadata.name", "metadata.namespace"]}}}}}},
    "oneOf": [{"required": ["value"]}, {"required": ["valueFrom"]}]}}
CONTAINER = {"type": "object", "required": ["name", "image"], "additionalProperties": False,
             "properties": {
                 "name": NAME, "image": {"type": "string", "minLength": 1},
                 "imagePullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                 "command": {"type": "array", "items": {"type": "string"}},
                 "args": {"type": "array", "items": {"type": "string"}},
                 "env": ENV,
                 "ports": {"type": "array", "items": {
                     "type": "object", "required": ["containerPort"],
                     "additionalProperties": False, "properties": {
                         "name": {"type": "string", "maxLength": 15},
                         "containerPort": PORT, "protocol": PROTO}}},
                 "livenessProbe": PROBE, "readinessProbe": PROBE,
                 "resources": RESOURCES,
                 "securityContext": {"type": "object"},
                 "volumeMounts": {"type": "array", "items": {
                     "type": "object", "required": ["name", "mountPath"],
                     "additionalProperties": False, "properties": {
                         "name": NAME, "mountPath": {"type": "string", "pattern": "^/"},
                         "readOnly": {"type": "boolean"}}}}}}
VOLUME = {"type": "object", "required": ["name"], "additionalProperties": False,
          "minProperties": 2, "maxProperties": 2, "properties": {
              "name": NAME,
              "configMap": {"type": "object", "required": ["name"]},
              "secret": {"type": "object", "required": ["secretName"], "properties": {
                  "secretName": NAME, "defaultMode": {"type": "integer", "minimum": 0,
                                                      "maximum": 511}}},
              "hostPath": {"type": "object", "required": ["path"], "properties": {
                  "path": {"type": "string", "pattern": "^/"},
                  "type": {"enum": ["", "DirectoryOrCreate", "Directory", "FileOrCreate",
                                    "File", "Socket", "CharDevice", "BlockDevice"]}}},
              "emptyDir": {"type": "object"}}}
SCHEMAS = {
    ("v1", "Namespace"): {"type": "object", "required": ["apiVersion", "kind", "metadata"],
                          "additionalProperties": False, "properties": {
                              "apiVersion": {}, "kind": {}, "metadata": META}},
    ("v1", "ConfigMap"): {"type": "object", "required": ["apiVersion", "kind", "metadata",
                                                          "data"],
                          "additionalProperties": False, "properties": {
                              "apiVersion": {}, "kind": {}, "metadata": META,
                              "data": {"type": "object",
                                       "additionalProperties": {"type": "string"}}}},
    ("v1", "Secret"): {"type": "object", "required": ["apiVersion", "kind", "metadata"],
                       "additionalProperties": False, "properties": {
                           "apiVersion": {}, "kind": {}, "metadata": META,
                           "type": {"type": "string"},
                           "stringData": {"type": "object",
                                          "additionalProperties": {"type": "string"}},
                           "data": {"type": "object"}}},
    ("v1", "Service"): {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
                        "additionalProperties": False, "properties": {
                            "apiVersion": {}, "kind": {}, "metadata": META,
                            "spec": {"type": "object", "required": ["selector", "ports"],
                                     "additionalProperties": False, "properties": {
                                         "clusterIP": {"type": "string"},
                                         "publishNotReadyAddresses": {"type": "boolean"},
                                         "selector": LABELS,
                                         "ports": {"type": "array", "minItems": 1, "items": {
                                             "type": "object", "required": ["port"],
                                             "additionalProperties": False, "properties": {
                                                 "name": {"type": "string"}, "port": PORT,
                                                 "targetPort": PORT, "protocol": PROTO}}}}}}},
    ("apps/v1", "DaemonSet"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False, "properties": {
            "apiVersion": {}, "kind": {}, "metadata": META,
            "spec": {"type": "object", "required": ["selector", "template"],
                     "additionalProperties": False, "properties": {
                         "selector": {"type": "object", "required": ["matchLabels"],
                                      "properties": {"matchLabels": LABELS}},
                         "updateStrategy": {"type": "object"},
                         "template": {
                             "type": "object", "required": ["metadata", "spec"],
                             "properties": {
                                 "metadata": {"type": "object", "required": ["labels"],
                                              "properties": {"labels": LABELS}},
                                 "spec": {
                                     "type": "object", "required": ["containers"],
                                     "additionalProperties": False, "properties": {
                                         "hostNetwork": {"type": "boolean"},
                                         "dnsPolicy": {"enum": ["ClusterFirst",
                                                                "ClusterFirstWithHostNet",
                                                                "Default", "None"]},
                                         "terminationGracePeriodSeconds": {
                                             "type": "integer", "minimum": 0},
                                         "securityContext": {"type": "object"},
                                         "initContainers": {"type": "array",
                                                            "items": CONTAINER},
                                         "containers": {"type": "array", "minItems": 1,
                                                        "items": CONTAINER},
                                         "volumes": {"type": "array", "items": VOLUME}}}}}}}}},
}


def manifests():
    import yaml
    docs = []
    for name in sorted(os.listdir(K8S)):
        if name.endswith(".yaml"):
            with open(os.path.join(K8S, name)) as f:
                for d in yaml.safe_load_all(f):
                    if d is not None:
                        docs.append((name, d))
    return docs


@test("deploy/kubernetes: every document validates against its kind's schema")
def t_k8s_schema(h):
    try:
        import jsonschema
    except ImportError:
        fail("python3-jsonschema is missing (scripts/setup.sh installs it)")
    docs = manifests()
    kinds = sorted(d["kind"] for _, d in docs)
    check(kinds == ["ConfigMap", "DaemonSet", "Namespace", "Secret", "Service"], kinds)
    for name, d in docs:
        schema = SCHEMAS.get((d.get("apiVersion"), d.get("kind")))
        check(schema is not None, "%s: unknown kind %s/%s" % (name, d.get("apiVersion"),
                                                                d.get("kind")))
        try:
            jsonschema.validate(d, schema)
        except jsonschema.ValidationError as e:
            fail("%s (%s): %s at %s" % (name, d["kind"], e.message, list(e.absolute_path)))
        if d["kind"] != "Namespace":
            check(d["metadata"].get("namespace") == "shoal", "%s: not in namespace shoal" % name)
    # The schemas do catch mistakes: a few broken copies must fail.
    ds = next(d for _, d in docs if d["kind"] == "DaemonSet")
    broken = json.loads(json.dumps(ds))
    del broken["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    bad_port = json.loads(json.dumps(ds))
    bad_port["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = 70000
    for b in (broken, bad_port):
        try:
            jsonschema.validate(b, SCHEMAS[("apps/v1", "DaemonSet")])
            fail("a broken DaemonSet passed the schema")
        except jsonschema.ValidationError:
            pass


@test("deploy/kubernetes: references hold and the agent accepts the DaemonSet's configuration")
def t_k8s_consistent(h):
    docs = manifests()
    by_kind = {}
    for _, d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    ds, svc = by_kind["DaemonSet"][0], by_kind["Service"][0]
    cm, secret = by_kind["ConfigMap"][0], by_kind["Secret"][0]
    pod = ds["spec"]["template"]
    labels = pod["metadata"]["labels"]
    for k, v in ds["spec"]["selector"]["matchLabels"].items():
        check(labels.get(k) == v, "DaemonSet selector %s=%s does not match its pods" % (k, v))
    for k, v in svc["spec"]["selector"].items():
        check(labels.get(k) == v, "Service selector %s=%s does not match the pods" % (k, v))
    check(svc["spec"].get("clusterIP") == "None", "the seed Service must be headless")
    check(svc["spec"].get("publishNotReadyAddresses") is True,
          "seeds must resolve before any agent is ready")
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", []):
        for m in c.get("volumeMounts", []):
            check(m["name"] in vols, "%s mounts unknown volume %s" % (c["name"], m["name"]))
    for v in vols.values():
        if "configMap" in v:
            check(v["configMap"]["name"] == cm["metadata"]["name"], v)
        if "secret" in v:
            check(v["secret"]["secretName"] == secret["metadata"]["name"], v)
    agent = pod["spec"]["containers"][0]
    for probe in ("livenessProbe", "readinessProbe"):
        check(probe in agent, "no %s" % probe)
    check(pod["spec"].get("hostNetwork") is True and
          pod["spec"].get("dnsPolicy") == "ClusterFirstWithHostNet",
          "host network needs dnsPolicy ClusterFirstWithHostNet to resolve the seed Service")
    ports = {(p["containerPort"], p["protocol"]) for p in agent["ports"]}
    for p in svc["spec"]["ports"]:
        check((p["targetPort"], p["protocol"]) in ports, "Service port %r not on the pod" % p)

    # The configuration, as the agent would get it: the image's entrypoint,
    # the container's args, the ConfigMap's file, the environment.
    conf_mount = next(m for m in agent["volumeMounts"] if vols[m["name"]].get("configMap"))
    files = {}
    for key, text in cm["data"].items():
        local = os.path.join(h.tmp, key)
        with open(local, "w") as f:
            f.write(text)
        files[os.path.join(conf_mount["mountPath"], key)] = local
    entry = re.search(r'^ENTRYPOINT (\[.*\])$', open(DOCKERFILE).read(), re.M)
    check(entry, "no ENTRYPOINT in the Dockerfile")
    entry = json.loads(entry.group(1))
    check(entry[:2] == ["/usr/local/bin/shoal", "agent"], entry)
    argv = [files.get(a, a) for a in entry[2:] + agent.get("args", [])]
    env = dict(os.environ)
    fields = {"spec.nodeName": "node-1", "status.hostIP": "10.1.2.3", "status.podIP": "10.1.2.3"}
    for e in agent["env"]:
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], e["value"])
        else:
            env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
    r = h.cli(["agent", "--print-config"] + argv, env=env)
    check(r.rc == 0, lambda: "the agent refuses the DaemonSet's configuration: %r" % r)
    rows = {l.split()[0]: l.split(None, 2)[1:] for l in r.out.splitlines()
            if l and not l.startswith("#")}
    check(rows["name"] == ["node-1", "environment SHOAL_NAME"], rows["name"])
    check(rows["bind"] == ["10.1.2.3:7946", "environment SHOAL_BIND"], rows["bind"])
    seed = "%s.%s.svc.cluster.local:7946" % (svc["metadata"]["name"], svc["metadata"]["namespace"])
    check(rows["retry-join"][0] == seed, "retry-join %r is not the Service %s" % (
        rows["retry-join"], seed))
    key_mount = next(m for m in agent["volumeMounts"] if vols[m["name"]].get("secret"))
    check(rows["cluster-key"][0].startswith(key_mount["mountPath"] + "/"), rows["cluster-key"])
    check(rows["cluster-key"][0].rsplit("/", 1)[1] in secret["stringData"], rows["cluster-key"])
    # probes: the binary the image installs, the API address the agent uses
    for probe in ("livenessProbe", "readinessProbe"):
        cmd = " ".join(agent[probe]["exec"]["command"])
        check("/usr/local/bin/shoal" in cmd and rows["http"][0] in cmd, cmd)
    check("COPY --from=build /src/build/shoal /usr/local/bin/shoal" in open(DOCKERFILE).read(),
          "the image no longer installs /usr/local/bin/shoal")
    # the init container gives the data dir to the uid the agent runs as
    uid = pod["spec"]["securityContext"]["runAsUser"]
    init = " ".join(pod["spec"]["initContainers"][0]["command"])
    check("chown %d:%d /var/lib/shoal" % (uid, uid) in init, init)


if __name__ == "__main__":
    run_tests()
