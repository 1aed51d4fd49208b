"""The deployment files under deploy/ are consistent with the server they deploy.

Nothing here talks to a cluster or builds an image: it parses every YAML document under
deploy/ and the Dockerfile, and checks what a typo would break at deploy time: apiVersion and
kind pairs, NeuronCore requests equal to limits, probes on the server's real health paths and
on the port the server is told to listen on, arguments the server accepts, and a Dockerfile
that builds and starts neuron-dp-server. When NEURON_DP_SERVER_BIN names the binary
(``cargo xtask python-test`` sets it), the accepted flags come from its ``serve --help``.
"""

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
NEURONCORE = "aws.amazon.com/neuroncore"
HEALTH = {"readinessProbe": "/v2/health/ready", "livenessProbe": "/v2/health/live"}
KNOWN_KINDS = {
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("serving.kserve.io/v1alpha1", "ServingRuntime"),
    ("serving.kserve.io/v1beta1", "InferenceService"),
}
# `neuron-dp-server serve`'s options, used when the binary is not at hand. Keep in step with
# dataparallel/server/src/main.rs; test_fallback_flags_match_the_binary checks it when it is.
FALLBACK_FLAGS = {
    "--model-name", "--model", "--host", "--port", "--device-ids", "--num-workers", "--max-batch-rows",
    "--max-delay-us", "--queue-capacity", "--unpacked", "--max-reading", "--timeout-ms", "--help",
    "-h",
}
# Options that take no value.
SWITCHES = {"--unpacked", "--help", "-h"}
# Options that may be given more than once (each value kept, in order).
REPEATABLE = {"--model"}


def documents():
    """(file name, document) for every YAML document under deploy/."""
    files = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert files, f"no YAML under {DEPLOY}"
    out = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    out.append((str(path.relative_to(DEPLOY)), doc))
    return out


def by_kind(kind):
    found = [doc for _, doc in documents() if doc.get("kind") == kind]
    assert found, f"no {kind} under deploy/"
    return found


def help_flags(text):
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])\b", text))


def server_flags():
    binary = os.environ.get("NEURON_DP_SERVER_BIN")
    if not binary:
        return FALLBACK_FLAGS
    out = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True, timeout=60, check=True)
    return help_flags(out.stdout)


def server_containers():
    """(where, container) for every container that runs the server."""
    out = []
    for deployment in by_kind("Deployment"):
        for c in deployment["spec"]["template"]["spec"]["containers"]:
            out.append((f"Deployment {deployment['metadata']['name']}", c))
    for runtime in by_kind("ServingRuntime"):
        for c in runtime["spec"]["containers"]:
            out.append((f"ServingRuntime {runtime['metadata']['name']}", c))
    return out


def parse_args(args, flags):
    """Splits a `serve` argument list into (positionals, {flag: value}); fails on unknown flags.

    A repeatable option's value is the list of its values."""
    positionals, options = [], {}
    i = 0
    while i < len(args):
        arg = str(args[i])
        if arg.startswith("-"):
            name, eq, value = arg.partition("=")
            assert name in flags, f"`{name}` is not an option of `neuron-dp-server serve` (it has {sorted(flags)})"
            assert name in REPEATABLE or name not in options, f"`{name}` given twice (clap rejects that)"
            if name in SWITCHES:
                value = None
            elif not eq:
                assert i + 1 < len(args), f"`{name}` needs a value"
                i += 1
                value = str(args[i])
            if name in REPEATABLE:
                options.setdefault(name, []).append(value)
            else:
                options[name] = value
        else:
            positionals.append(arg)
        i += 1
    return positionals, options


def model_paths(args, flags):
    """Every NEFF path a `serve` argument list names: the positional ones and each --model's."""
    positionals, options = parse_args(args, flags)
    paths = list(positionals)
    for model in options.get("--model", []):
        name, eq, files = model.partition("=")
        assert eq and name and files, f"--model {model}: give NAME=PATH[,PATH...]"
        paths.extend(files.split(","))
    return paths


def test_every_document_is_a_known_api_version_and_kind():
    docs = documents()
    for name, doc in docs:
        pair = (doc.get("apiVersion"), doc.get("kind"))
        assert pair in KNOWN_KINDS, f"{name}: unexpected apiVersion/kind {pair}"
        assert doc.get("metadata", {}).get("name"), f"{name}: {pair[1]} has no metadata.name"
        assert isinstance(doc.get("spec"), dict), f"{name}: {pair[1]} has no spec"
    assert {(d["apiVersion"], d["kind"]) for _, d in docs} == KNOWN_KINDS


def test_neuroncore_requests_equal_limits():
    resources = [(w, c.get("resources", {})) for w, c in server_containers()]
    for isvc in by_kind("InferenceService"):
        resources.append((f"InferenceService {isvc['metadata']['name']}", isvc["spec"]["predictor"]["model"]["resources"]))
    asking = 0
    for where, res in resources:
        requests, limits = res.get("requests", {}), res.get("limits", {})
        if NEURONCORE in requests or NEURONCORE in limits:
            asking += 1
            assert requests.get(NEURONCORE) == limits.get(NEURONCORE), f"{where}: {NEURONCORE} requests != limits"
            count = limits[NEURONCORE]
            assert isinstance(count, int) and count >= 1, f"{where}: {NEURONCORE} must be a whole number >= 1"
    # The Deployment and the InferenceService ask for cores; the ServingRuntime leaves it to them.
    assert asking >= 2, "the Deployment and the InferenceService must request NeuronCores"


def test_args_are_options_the_server_accepts_and_probes_hit_its_port():
    flags = server_flags()
    for where, c in server_containers():
        positionals, options = parse_args(c["args"], flags)
        assert positionals and all(p.endswith(".neff") for p in positionals), f"{where}: model paths {positionals}"
        assert all(p.startswith("/") for p in positionals), f"{where}: model paths must be absolute"
        assert options.get("--host") == "0.0.0.0", f"{where}: the server must listen on 0.0.0.0 in a pod"
        port = int(options["--port"])
        named = {p.get("name"): p["containerPort"] for p in c["ports"]}
        assert port in named.values(), f"{where}: containerPort {list(named.values())} is not --port {port}"
        for probe, path in HEALTH.items():
            get = c[probe]["httpGet"]
            assert get["path"] == path, f"{where}: {probe} path {get['path']} is not {path}"
            probe_port = named.get(get["port"], get["port"])
            assert probe_port == port, f"{where}: {probe} port {get['port']} is not the server's {port}"


def test_models_come_from_the_mounted_paths():
    for deployment in by_kind("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod.get("terminationGracePeriodSeconds", 0) >= 30, "give SIGTERM's drain time to finish"
        volumes = {v["name"] for v in pod["volumes"]}
        for c in pod["containers"]:
            mounts = [m for m in c["volumeMounts"] if m["name"] in volumes]
            for model in model_paths(c["args"], server_flags()):
                assert any(model.startswith(m["mountPath"].rstrip("/") + "/") for m in mounts), f"{model} is on no volume"
    for runtime in by_kind("ServingRuntime"):
        assert runtime["spec"]["protocolVersions"] == ["v2"]
        for c in runtime["spec"]["containers"]:
            assert c["name"] == "kserve-container"
            for model in model_paths(c["args"], server_flags()):
                assert model.startswith("/mnt/models/"), f"{model}: KServe puts the model under /mnt/models"
    runtimes = {r["metadata"]["name"]: r for r in by_kind("ServingRuntime")}
    for isvc in by_kind("InferenceService"):
        model = isvc["spec"]["predictor"]["model"]
        assert model["runtime"] in runtimes, f"runtime {model['runtime']} is not defined under deploy/"
        formats = {f["name"] for f in runtimes[model["runtime"]]["spec"]["supportedModelFormats"]}
        assert model["modelFormat"]["name"] in formats
        assert model["storageUri"]
    services = by_kind("Service")
    labels = [d["spec"]["template"]["metadata"]["labels"] for d in by_kind("Deployment")]
    for svc in services:
        selector = svc["spec"]["selector"]
        assert any(selector.items() <= lab.items() for lab in labels), f"Service {svc['metadata']['name']} selects no pod"


def dockerfile_instructions():
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_builds_and_starts_the_server():
    steps = dockerfile_instructions()
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) >= 2, "build and runtime stages"
    runs = " ".join(rest for word, rest in steps if word == "RUN")
    build = re.search(r"cargo build\b([^&;|]*)", runs)
    assert build, "no cargo build"
    words = shlex.split(build.group(1))
    assert "--release" in words and "--locked" in words
    assert words[words.index("-p") + 1] == "neuron-dp-server"
    assert "aws-neuronx-runtime-lib" in runs and "https://apt.repos.neuron.amazonaws.com" in runs
    entry = [rest for word, rest in steps if word == "ENTRYPOINT"]
    assert len(entry) == 1
    argv = yaml.safe_load(entry[0])  # the JSON (exec) form
    assert isinstance(argv, list) and Path(argv[0]).name == "neuron-dp-server" and argv[1:] == ["serve"]
    copied = [rest for word, rest in steps if word == "COPY" and "--from=" in rest]
    assert any(rest.split()[-1] == argv[0] for rest in copied), "the ENTRYPOINT binary is not copied in"
    users = [rest for word, rest in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0"), "run as a non-root user"
    cmd = yaml.safe_load([rest for word, rest in steps if word == "CMD"][-1])
    positionals, options = parse_args(cmd, server_flags())
    assert positionals and options.get("--host") == "0.0.0.0"
    assert ("EXPOSE", options["--port"]) in steps


def test_fallback_flags_match_the_binary():
    if not os.environ.get("NEURON_DP_SERVER_BIN"):
        pytest.skip("NEURON_DP_SERVER_BIN is not set (cargo xtask python-test sets it)")
    assert server_flags() == FALLBACK_FLAGS


@pytest.mark.parametrize(
    "args",
    [["/m.neff", "--prot", "8000"], ["/m.neff", "--port"], ["/m.neff", "--port", "1", "--port", "2"]],
)
def test_argument_check_rejects_bad_args(args):
    with pytest.raises(AssertionError):
        parse_args(args, FALLBACK_FLAGS)


def test_several_models_are_repeated_model_options():
    args = ["/m/a.neff", "--model", "b=/m/b1.neff,/m/b2.neff", "--model=c=/n/c.neff", "--port", "1"]
    positionals, options = parse_args(args, FALLBACK_FLAGS)
    assert positionals == ["/m/a.neff"]
    assert options == {"--model": ["b=/m/b1.neff,/m/b2.neff", "c=/n/c.neff"], "--port": "1"}
    assert model_paths(args, FALLBACK_FLAGS) == ["/m/a.neff", "/m/b1.neff", "/m/b2.neff", "/n/c.neff"]
    with pytest.raises(AssertionError):
        model_paths(["--model", "/m/a.neff"], FALLBACK_FLAGS)
