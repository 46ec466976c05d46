#!/usr/bin/env python3
"""`make bench`: the operator measured against the real servers, one run, side by side.

Figures (issue 13): cold start of N accounts against the bcrypt floor and LibreChat's own
batch path (secretRef and password.generate), the cost of a full resync and of a restart,
reaction times both ways, memory, and a cold start under injected faults. Writes
bench/results/latest.json, latest.md, cold-start.svg and faults.svg. Asserts nothing: a missed goal is
reported as missed.

Each phase runs its own operator process (release build) scoped to the phase's namespace, and
its own MongoDB database, so that the figures of one phase are not the background of another.

Environment: KUBECONFIG, MONGODB_URI, REDIS_URL (from tests/env/up.sh), BENCH_N, BENCH_ENV_DIR,
BENCH_PHASES (comma list: coldstart,librechat,generate,resync,reaction,faults; default all;
librechat is LibreChat's own batch path, compared with the cold start), BENCH_CARRY=1 (a run of
some phases keeps the previous latest.json's figures of the others, for the same N, and its notes
say which figures were carried and from which run and build), BENCH_PROFILE=0 (no perf profile
of the secretRef cold start; by default it is taken where `perf record` works and written to
bench/results/profile-coldstart.md), BENCH_OUT (where the results go; default bench/results, whose
latest.json BENCH_CARRY reads; a run elsewhere leaves the README alone), BENCH_LAST_OUTAGE
(mongo_stopped, mongo_stalled, redis_stopped or "API server restarted": that fault strikes last
before the leader is killed, the hardest draw for the take-over; the others stay random).
"""
import atexit
import base64
import concurrent.futures
import datetime
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import bcrypt
import pymongo

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "librechat-operator"
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "bench" / "results"))
N = int(os.environ.get("BENCH_N", "10000"))
ENV_DIR = Path(os.environ.get("BENCH_ENV_DIR", "/tmp/lco-bench-env"))
PHASES = os.environ.get("BENCH_PHASES", "coldstart,librechat,generate,resync,reaction,faults").split(",")
CARRY = os.environ.get("BENCH_CARRY") == "1"
MONGO_URI = os.environ["MONGODB_URI"]
REDIS_URL = os.environ["REDIS_URL"]
CORES = os.cpu_count() or 1
PROFILE = os.environ.get("BENCH_PROFILE", "1") != "0"
LAST_OUTAGE = os.environ.get("BENCH_LAST_OUTAGE") or None
# Each run's namespaces and databases are its own (servers of your own may hold earlier runs).
RUN = time.strftime("%m%d%H%M")
PREFIX = f"lco-bench-{RUN}"

GOALS = {
    "cold_start_vs_floor": ("≤", 1.3),
    "cold_start_vs_librechat": ("≤", 0.6),
    "cold_start_generate_vs_floor": ("≤", 1.3),
    "cold_start_generate_vs_librechat": ("≤", 0.6),
    "resync_writes": ("=", 0),
    "resync_mongo_reads_per_account": ("≤", 1.0),
    "restart_writes": ("=", 0),
    "restart_mongo_reads_per_account": ("≤", 1.0),
    "ban_p50_s": ("≤", 0.3),
    "ban_p99_s": ("≤", 1.0),
    "password_p50_s": ("≤", 0.3),
    "password_p99_s": ("≤", 1.0),
    "deletion_p50_s": ("≤", 0.3),
    "deletion_p99_s": ("≤", 1.0),
    "seen_invite_used_p50_s": ("≤", 2.0),
    "seen_hand_edit_p50_s": ("≤", 2.0),
    "seen_owner_deletion_p50_s": ("≤", 2.0),
    "peak_rss_mib": ("≤", 150),
    "faults_accounts_exact": ("=", True),
    "faults_duplicates": ("=", 0),
    "faults_passwords_verify": ("=", True),
    "faults_all_ready": ("=", True),
    "faults_outages_named": ("=", True),
    "faults_convergence_after_recovery_s": ("≤", 30),
}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd, input=None, check=True, timeout=1800):
    p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}…: {p.stderr.strip()[-800:]}")
    return p.stdout


def kubectl(*args, input=None, check=True, timeout=1800):
    return run(["kubectl", *args], input=input, check=check, timeout=timeout)


def ratio(seconds, reference):
    """A ratio judged against a goal: three decimals, so that 0.601 is not shown (and judged)
    as the 0.6 it would round to."""
    return round(seconds / reference, 3)


def percentile(values, p):
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_metrics(text):
    """Prometheus text -> {series: value} (series = name{labels})."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        try:
            out[series] = float(value)
        except ValueError:
            pass
    return out


def label(series, name):
    m = re.search(name + r'="([^"]*)"', series)
    return m.group(1) if m else None


# --------------------------------------------------------------------------------------------
# The operator, as a process
# --------------------------------------------------------------------------------------------


RUNNING = []


def stop_operators(*_):
    """A bench cut short (Ctrl-C, kill) leaves no operator processes behind."""
    for op in RUNNING:
        if op.proc and op.proc.poll() is None:
            op.proc.kill()
    if _:
        sys.exit(1)


class Operator:
    def __init__(self, name, namespace, extra_args=(), env=None):
        self.name, self.namespace = name, namespace
        self.port = free_port()
        self.extra_args, self.env = list(extra_args), env or {}
        self.proc = None
        self.peak_kib = 0
        self.log_path = ROOT / "bench" / "logs" / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)

    def start(self):
        env = dict(os.environ, WATCH_NAMESPACES=self.namespace, LOG_FORMAT="json", **self.env)
        env.setdefault("RUST_LOG", "warn,librechat_operator=info,kube_client::client::builder=off")
        log_file = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [str(BIN), "run", "--http-addr", f"127.0.0.1:{self.port}", *self.extra_args],
            env=env, stdout=log_file, stderr=log_file, start_new_session=True,
        )
        RUNNING.append(self)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.metrics_text() is not None:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator {self.name} exited; see {self.log_path}")
            time.sleep(0.1)
        raise RuntimeError(f"operator {self.name} did not serve /metrics within 60 s")

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.sample_memory()
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self):
        self.kill()
        return self.start()

    def status_kib(self, field):
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        except (OSError, AttributeError):
            pass
        return 0

    def sample_memory(self):
        self.peak_kib = max(self.peak_kib, self.status_kib("VmHWM"))
        return self.status_kib("VmRSS")

    def metrics_text(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                return r.read().decode()
        except OSError:
            return None

    def metrics(self):
        return parse_metrics(self.metrics_text() or "")

    def ready(self, kind="LibreChatUser"):
        m = self.metrics()
        return int(m.get(f'librechat_operator_managed_objects{{kind="{kind}",ready="true"}}', 0))

    def reconciles(self, kind="LibreChatUser"):
        return int(sum(v for k, v in self.metrics().items()
                       if k.startswith("librechat_operator_reconciles_total{") and f'kind="{kind}"' in k))

    def store_ops(self):
        out = {}
        for k, v in self.metrics().items():
            if k.startswith("librechat_operator_store_operations_total{"):
                key = (label(k, "store"), label(k, "verb"))
                out[key] = out.get(key, 0) + v
        return out


MONGO_WRITES = {"insert", "update", "delete", "findAndModify", "createIndexes", "bulkWrite", "drop"}
REDIS_WRITES = {"del", "set", "unlink", "expire"}


def ops_delta(before, after):
    return {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) - before.get(k, 0) > 0}


def write_count(delta):
    return sum(v for (store, verb), v in delta.items()
               if store == "mongo" and verb in MONGO_WRITES or store == "redis" and verb in REDIS_WRITES)


def mongo_reads(delta):
    return sum(v for (store, verb), v in delta.items()
               if store == "mongo" and verb in {"find", "aggregate", "getMore", "count", "countDocuments", "distinct"})


def api_requests():
    """apiserver_request_total by verb, resource and subresource (all clients)."""
    out = {}
    for k, v in parse_metrics(kubectl("get", "--raw", "/metrics", timeout=60)).items():
        if k.startswith("apiserver_request_total{"):
            key = (label(k, "verb"), label(k, "resource"), label(k, "subresource") or "")
            out[key] = out.get(key, 0) + v
    return out


# What the operator writes through the API server: its kinds (and their status), the Secrets
# it owns, Events. Other clients' writes (the controller manager's) are not its cost.
OPERATOR_RESOURCES = {"librechatinstances", "librechatusers", "userbans", "userinvites",
                      "librechatgroups", "librechatroles", "secrets", "events"}


API_WRITES = {"POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE"}


def redis_cmdstats():
    out = {}
    text = run(["redis-cli", "-u", REDIS_URL, "info", "commandstats"], check=False)
    for line in text.splitlines():
        m = re.match(r"cmdstat_(\w+):calls=(\d+)", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


# --------------------------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------------------------


def db_uri(db):
    m = re.match(r"^(mongodb(?:\+srv)?://[^/?]*)(?:/[^?]*)?(\?.*)?$", MONGO_URI)
    return f"{m.group(1)}/{db}{m.group(2) or ''}"


def namespace_with_instance(ns, db, resync="1h", extra=None):
    kubectl("create", "namespace", ns, check=False)
    stores = {"mongo": db_uri(db), "redis": REDIS_URL}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "lc-stores", "namespace": ns},
              "stringData": stores}
    spec = {"mongo": {"uriSecretRef": {"name": "lc-stores", "key": "mongo"}},
            "redis": {"uriSecretRef": {"name": "lc-stores", "key": "redis"}},
            "resyncPeriod": resync, **(extra or {})}
    instance = {"apiVersion": "librechat.ai/v1alpha1", "kind": "LibreChatInstance",
                "metadata": {"name": "lc", "namespace": ns}, "spec": spec}
    kubectl("apply", "--server-side", "--field-manager=bench", "-f", "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [secret, instance]}))


def password_of(prefix, i):
    return f"{prefix}-Pass-{i:06d}-x"


def user_objects(ns, prefix, n, generate=False, start=0, extra=None):
    items = []
    for i in range(start, start + n):
        name = f"{prefix}{i}"
        spec = {"instanceRef": {"name": "lc"}, "email": f"{name}@example.com", "name": f"User {name}",
                **(extra or {})}
        if generate:
            spec["password"] = {"generate": {"secretName": f"{name}-login"}}
        else:
            items.append({"apiVersion": "v1", "kind": "Secret",
                          "metadata": {"name": f"{name}-pw", "namespace": ns},
                          "stringData": {"password": password_of(prefix, i)}})
            spec["password"] = {"secretRef": {"name": f"{name}-pw", "key": "password"}}
        items.append({"apiVersion": "librechat.ai/v1alpha1", "kind": "LibreChatUser",
                      "metadata": {"name": name, "namespace": ns}, "spec": spec})
    return items


def per_account(items):
    """The items grouped by account: a password Secret with the LibreChatUser after it."""
    groups = []
    for item in items:
        if item["kind"] == "Secret" or not groups or groups[-1][-1]["kind"] != "Secret":
            groups.append([item])
        else:
            groups[-1].append(item)
    return groups


def apply_parallel(items, chunks=4, attempts=10):
    """kubectl apply --server-side, in `chunks` concurrent kubectl processes. An account's
    Secret and LibreChatUser go to the same process, the Secret first, as a GitOps tool applies
    them (a user applied by another process before its Secret would first report it missing).
    A chunk whose kubectl fails (the API server restarted under it) is applied again once the
    API server is ready, as Argo CD or Flux retry a sync: server-side apply is idempotent.
    Returns how many retries were needed."""
    groups = per_account(items)
    retries = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for c in range(chunks):
            part = [item for group in groups[c::chunks] for item in group]
            if not part:
                continue
            p = Path(tmp) / f"chunk{c}.json"
            p.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": part}))
            paths.append(p)

        def apply(path):
            error = ""
            for attempt in range(attempts):
                if attempt:
                    retries.append(path.name)
                    apiserver_ready(timeout=300, every=1)
                proc = subprocess.run(["kubectl", "apply", "--server-side", "--field-manager=bench", "-f", str(path)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                if proc.returncode == 0:
                    return None
                error = proc.stderr
            return error

        with concurrent.futures.ThreadPoolExecutor(len(paths)) as pool:
            errors = [e for e in pool.map(apply, paths) if e]
    if errors:
        raise RuntimeError("kubectl apply failed: " + errors[0][-800:])
    return len(retries)


def list_objects(ns, plural):
    return json.loads(kubectl("get", plural, "-n", ns, "-o", "json", timeout=600))["items"]


def is_ready(obj):
    gen = obj["metadata"].get("generation")
    return any(c["type"] == "Ready" and c["status"] == "True" and c.get("observedGeneration") == gen
               for c in obj.get("status", {}).get("conditions", []))


def wait_all_ready(op, ns, n, timeout, samples=None, memory=None, started=None):
    """Polls the operator's readiness gauge each second until n are Ready; records the curve."""
    started = started or time.time()
    marks = sorted(memory.keys()) if memory is not None else []
    deadline = time.time() + timeout
    while time.time() < deadline:
        ready = op.ready()
        rss = op.sample_memory()
        if samples is not None:
            samples.append((round(time.time() - started, 2), ready))
        for mark in marks:
            if memory[mark] is None and ready >= mark:
                memory[mark] = round(rss / 1024, 1)
        if ready >= n:
            # The gauge is the operator's view; the API server's is the truth.
            objs = list_objects(ns, "librechatusers")
            if sum(is_ready(o) for o in objs) >= n:
                return time.time() - started
        time.sleep(1)
    return None


class Profile:
    """perf's CPU-clock samples of the whole machine (199 a second on each core) while a phase
    runs: which process the CPU went to, and where inside the operator, by function and by
    crate. The issue's step 6: a missed cold-start goal is profiled, not guessed at. Nothing
    when perf is missing or the kernel refuses it."""

    HASHING = ("blowfish", "bcrypt", "::eks::")

    def __init__(self, name):
        self.path = ROOT / "bench" / "logs" / f"perf-{name}.data"
        self.proc = None
        if PROFILE and shutil.which("perf"):
            self.proc = subprocess.Popen(
                ["perf", "record", "-a", "-e", "cpu-clock", "-F", "199", "-o", str(self.path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            if self.proc.poll() is not None:
                self.proc = None

    def stop(self, op_pid):
        if not self.proc:
            return None
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=120)
        by_process = self._by_process()
        operator = self._report("--pid", str(op_pid), "--percentage", "relative", "--sort", "symbol",
                                "--percent-limit", "0.05")
        crates = {}
        for share, symbol in operator:
            crate = self.crate_of(symbol)
            crates[crate] = round(crates.get(crate, 0) + share, 2)
        hashing = sum(share for share, symbol in operator if any(h in symbol.lower() for h in self.HASHING))
        return {"by_process_percent": {name: share for share, name in by_process},
                "operator_hashing_percent": round(hashing, 1),
                "operator_by_crate_percent": dict(sorted(crates.items(), key=lambda kv: -kv[1])),
                "operator_top_functions": [[share, symbol] for share, symbol in operator[:40]]}

    def _by_process(self):
        """Shares of all samples by process (threads counted with their process, named by its
        main thread: the operator's tokio workers are the operator), idle included."""
        out = run(["perf", "script", "-i", str(self.path), "-F", "comm,pid,tid"], check=False, timeout=600)
        counts, names = {}, {}
        for line in out.splitlines():
            m = re.match(r"\s*(.+?)\s+(\d+)/(\d+)\s*$", line)
            if not m:
                continue
            pid = int(m.group(2))
            counts[pid] = counts.get(pid, 0) + 1
            if pid == int(m.group(3)) or pid not in names:
                names[pid] = "idle" if pid == 0 else m.group(1)
        total = sum(counts.values()) or 1
        shares = {}
        for pid, n in counts.items():
            shares[names[pid]] = shares.get(names[pid], 0) + 100 * n / total
        return [(round(v, 2), k) for k, v in sorted(shares.items(), key=lambda kv: -kv[1]) if v >= 0.5]

    def _report(self, *args):
        out = run(["perf", "report", "-i", str(self.path), "--stdio", "--no-children", "-q", *args],
                  check=False, timeout=600)
        rows = []
        for line in out.splitlines():
            m = re.match(r"\s*([0-9.]+)%\s+(\[[.k]\]\s+)?(.+?)\s*$", line)
            if m:
                kernel = (m.group(2) or "").startswith("[k]")
                symbol = re.sub(r"(\s+-)+$", "", m.group(3))  # perf's empty cycle columns
                rows.append((float(m.group(1)), ("[k] " if kernel else "") + symbol))
        return rows

    @staticmethod
    def crate_of(symbol):
        """The crate a demangled Rust symbol belongs to (`<a::B as c::D>::f` counts for a),
        or where a non-Rust one lives (the kernel, libc)."""
        if symbol.startswith(("0x", "[k] ")):
            return "kernel or unresolved"
        m = re.match(r"<?&?(?:mut )?(?:dyn )?([A-Za-z_][A-Za-z0-9_]*)::", symbol)
        return m.group(1) if m else "libc and other C"


def profile_md(profile):
    lines = ["# Where the secretRef cold start's CPU went", "",
             "`perf record -a -e cpu-clock -F 199` over the whole cold start, from `make bench`. "
             "Shares of all samples by process, then the operator's own samples by crate and by function "
             "(a sample is the function running then; callers are not attributed).", "",
             "| process | % of all samples |", "|---|---|"]
    lines += [f"| {name} | {share} |" for name, share in profile["by_process_percent"].items()]
    lines += ["", f"Inside the operator: {profile['operator_hashing_percent']} % in bcrypt's Blowfish.", "",
              "| crate | % of the operator's samples |", "|---|---|"]
    lines += [f"| {name} | {share} |" for name, share in profile["operator_by_crate_percent"].items()]
    lines += ["", "| % of the operator's samples | function |", "|---|---|"]
    lines += [f"| {share} | `{symbol}` |" for share, symbol in profile["operator_top_functions"]]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------------------------


def bcrypt_floor():
    run(["cargo", "build", "--release", "--example", "bcrypt_floor"], timeout=1800)
    measured = json.loads(run([str(ROOT / "target/release/examples/bcrypt_floor"), "20"]).strip())
    # The floor's unit is the fastest lone hash, the bcrypt crate's or the operator's own:
    # a faster lone hash of ours makes the floor stricter, never looser. The operator's
    # interleaved rate (several passwords per core at once) is reported, never the floor.
    seconds = min(measured["crate"], measured["operator_alone"])
    return {"bcrypt_cost10_seconds": seconds, "floor_seconds": N * seconds / CORES,
            "measured": measured}


def librechat_batch():
    log(f"LibreChat's own batch path: {N} accounts in one Node process")
    out = run(["node", str(ROOT / "bench/librechat_batch.mjs"), MONGO_URI, f"bench_{RUN}_librechat", str(N)],
              timeout=24 * 3600)
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def cpu_seconds(op):
    """CPU seconds used so far by each process of the test bed (its servers, found by the
    environment's directory or Redis port on their command line), the operator, and the
    bench's finished children (the kubectl appliers)."""
    tick = os.sysconf("SC_CLK_TCK")
    redis_port = REDIS_URL.rstrip("/").rsplit(":", 1)[-1]
    out = {}

    def add(name, pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = out.get(name, 0) + (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass

    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == (op.proc.pid if op.proc else -1):
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if str(ENV_DIR) in cmdline or (comm == "redis-server" and f":{redis_port}" in cmdline):
            add(comm, entry.name)
    add("librechat-operator", op.proc.pid)
    import resource
    out["kubectl (applying)"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime + \
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime
    return out


def per_account_api_requests(before, after):
    """API server requests per account between two readings, by `VERB resource[/sub]`, for
    the kinds the operator reads and writes (the bench's own applies are the APPLY rows)."""
    out = {}
    for (verb, resource, sub), v in after.items():
        if resource not in OPERATOR_RESOURCES:
            continue
        d = v - before.get((verb, resource, sub), 0)
        if d > 0:
            out[f"{verb} {resource}{'/' + sub if sub else ''}"] = round(d / N, 3)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def cold_start(results, name, generate):
    ns, db = f"{PREFIX}-{name}", f"bench_{RUN}_{name}"
    # The deletion guard would rate-limit the reaction phase's 100 deletions (by design).
    namespace_with_instance(ns, db, resync="120s", extra={"deletionGuard": {"maxPerHour": 100000}})
    op = Operator(name, ns).start()
    items = user_objects(ns, "u" if not generate else "g", N, generate=generate)
    samples, memory = [], ({m: None for m in (1000, 5000, 10000) if m <= N} if not generate else None)
    log(f"cold start ({name}): applying {N} LibreChatUsers" + (" (password.generate)" if generate else " and their Secrets"))
    started = time.time()
    applier = threading.Thread(target=apply_parallel, args=(items,))
    cpu_before, api_before = cpu_seconds(op), api_requests()
    profile = Profile(name) if not generate else None
    applier.start()
    took = wait_all_ready(op, ns, N, timeout=6 * 3600, samples=samples, memory=memory, started=started)
    applier.join()
    cpu_after, api_after = cpu_seconds(op), api_requests()
    profiled = profile.stop(op.proc.pid) if profile else None
    api = per_account_api_requests(api_before, api_after)
    cpu = {k: round(cpu_after[k] - cpu_before.get(k, 0), 1) for k in cpu_after
           if cpu_after[k] - cpu_before.get(k, 0) >= 0.05}
    log(f"cold start ({name}): {'all Ready after %.1f s' % took if took else 'NOT all Ready'}")
    return op, {"seconds": took, "samples": samples, "memory_mib_at": memory, "peak_rss_mib": round(op.peak_kib / 1024, 1),
                "cpu_seconds": cpu, "api_requests_per_account": api, "profile": profiled,
                "reconciles_per_account": round(op.reconciles("LibreChatUser") / N, 2),
                "bcrypt_hashes": int(op.metrics().get("librechat_operator_bcrypt_hashes_total", 0))}


def settle(op, kind="LibreChatUser", quiet=5, timeout=3600):
    """Waits until the operator has not reconciled for `quiet` seconds."""
    last, since = op.reconciles(kind), time.time()
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(1)
        now = op.reconciles(kind)
        if now != last:
            last, since = now, time.time()
        elif time.time() - since >= quiet:
            return


def stats_current(ns, timeout=180):
    """Waits until the instance's counts include every account: counts taken during the cold
    start are recounted (at most once a minute) and written, which a resync or restart measured
    before that would count as its own write. Both counts: an account is counted as managed
    from its reservation, before it is written, so managedUsers can reach N before users."""
    def counted():
        inst = json.loads(kubectl("get", "librechatinstance", "lc", "-n", ns, "-o", "json"))
        stats = inst.get("status", {}).get("stats") or {}
        return stats.get("managedUsers", 0) >= N and stats.get("users", 0) >= N
    if timed_until(counted, timeout=timeout, every=2) is None:
        log(f"the instance's counts did not reach {N} managed users within {timeout} s")


def resync_and_restart(op, ns):
    """A full resync (forced by an instance change) and a restart: what they cost."""
    # Periodic resyncs are spread over the last fifth of the period, so with a short period
    # they never pause: measured with none due, then the short period back for the reaction
    # phase (a steady background of resyncs, as in production).
    set_resync(ns, "1h")
    settle(op)
    stats_current(ns)
    figures = {}
    # The API server's own background (controller manager, leases) over a quiet window.
    a0, t0 = api_requests(), time.time()
    time.sleep(10)
    a1 = api_requests()
    background = {v: (a1.get(v, 0) - a0.get(v, 0)) / (time.time() - t0) for v in a1}

    holder = {"op": op}

    def measure(trigger):
        before = holder["op"]
        status0 = instance_status(ns)
        s0, rc0, r0, a0 = before.store_ops(), before.reconciles(), redis_cmdstats(), api_requests()
        t = time.time()
        trigger()
        current = holder["op"]
        # A restarted operator counts from zero.
        base_ops, base_rc = (s0, rc0) if current is before else ({}, 0)
        timed_until(lambda: current.reconciles() - base_rc >= N, timeout=3600, every=0.5)
        wall = time.time() - t
        settle(current)
        elapsed = time.time() - t
        s1, r1, a1 = current.store_ops(), redis_cmdstats(), api_requests()
        delta = ops_delta(base_ops, s1)
        api = {k: a1.get(k, 0) - a0.get(k, 0) - background.get(k, 0) * elapsed for k in a1}
        writes_by = {f"{v} {r}{'/' + sub if sub else ''}": round(x) for (v, r, sub), x in api.items()
                     if v in API_WRITES and r in OPERATOR_RESOURCES and round(x) > 0}
        # The trigger itself: the bench's own patch of the instance, and the instance's two
        # status writes for its new generation (Reconciling, then Ready: what every kind writes
        # once per generation so that kstatus never takes an old Ready for a new spec).
        trigger_writes = 3 if current is before else 0
        api_writes = max(0, sum(writes_by.values()) - trigger_writes)
        redis_writes = sum(r1.get(c, 0) - r0.get(c, 0) for c in r1 if c in REDIS_WRITES)
        return {
            "wall_seconds": round(wall, 2),
            "reconciles": current.reconciles() - base_rc,
            "operator_store_ops": {f"{st}.{v}": n for (st, v), n in sorted(delta.items())},
            "mongo_writes": write_count({k: v for k, v in delta.items() if k[0] == "mongo"}),
            "redis_writes": redis_writes,
            "api_writes": api_writes,
            "api_writes_by_resource": writes_by,
            "api_requests_by_verb": {v: round(sum(x for (vv, _, _), x in api.items() if vv == v))
                                     for v in {k[0] for k in api}},
            "writes": write_count(delta) + redis_writes + api_writes,
            "mongo_reads_per_account": round(mongo_reads(delta) / N, 3),
            "api_requests_per_account": round(max(0, sum(x for (_, r, _), x in api.items() if r in OPERATOR_RESOURCES)) / N, 3),
            # What the instance's status writes changed, to tell the trigger's own writes from
            # any other.
            "instance_status_changed": status_changes(status0, instance_status(ns)),
        }

    def force():
        set_resync(ns, "59m")

    log("resync: an instance change makes every account reconcile once")
    figures["resync"] = measure(force)

    def restart():
        holder["op"].kill(signal.SIGTERM)
        figures["peak_rss_mib_through_resync"] = round(holder["op"].peak_kib / 1024, 1)
        holder["op"] = Operator(op.name + "-restarted", ns).start()

    log("restart: the operator starts again over N Ready accounts")
    figures["restart"] = measure(restart)
    set_resync(ns, "120s")
    settle(holder["op"])
    return holder["op"], figures


def instance_status(ns):
    inst = json.loads(kubectl("get", "librechatinstance", "lc", "-n", ns, "-o", "json"))
    return inst.get("status", {})


def status_changes(old, new):
    """The status fields that differ, conditions by type (their times left out)."""
    def flat(status):
        out = {k: v for k, v in status.items() if k not in ("conditions", "stats")}
        out.update({f"stats.{k}": v for k, v in (status.get("stats") or {}).items()})
        for c in status.get("conditions") or []:
            out[f"conditions.{c.get('type')}"] = {k: v for k, v in c.items() if k != "lastTransitionTime"}
        return out
    a, b = flat(old), flat(new)
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def set_resync(ns, period):
    patch = json.dumps({"spec": {"resyncPeriod": period}})
    kubectl("patch", "librechatinstance", "lc", "-n", ns, "--type", "merge", "-p", patch)
    time.sleep(2)


def timed_until(check, timeout=30, every=0.005):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if check():
            return time.time() - t0
        time.sleep(every)
    return None


def reaction(op, ns, db_name, samples=100):
    db = pymongo.MongoClient(db_uri(db_name))[db_name]
    users = {o["metadata"]["name"]: o for o in list_objects(ns, "librechatusers")}
    uid = {n: o.get("status", {}).get("userId") for n, o in users.items()}
    figures = {}
    log(f"reaction: {samples} UserBans one by one")
    bans = []
    for i in range(samples):
        name = f"u{i}"
        kubectl("apply", "--server-side", "--field-manager=bench", "-f", "-", input=json.dumps({
            "apiVersion": "librechat.ai/v1alpha1", "kind": "UserBan",
            "metadata": {"name": f"ban-{name}", "namespace": ns},
            "spec": {"instanceRef": {"name": "lc"}, "userRef": {"name": name}, "duration": "1h"}}))
        key = f"BANS:{uid[name]}"
        bans.append(timed_until(lambda: db.logs.find_one({"key": key}, {"_id": 1}) is not None))
    figures["ban"] = bans
    log(f"reaction: {samples} password Secret changes")
    changes = []
    for i in range(samples, 2 * samples):
        name = f"u{i}"
        before = db.users.find_one({"email": f"{name}@example.com"}, {"password": 1})["password"]
        new = base64.b64encode(f"Changed-Pass-{i}-y".encode()).decode()
        kubectl("patch", "secret", f"{name}-pw", "-n", ns, "-p", json.dumps({"data": {"password": new}}))
        changes.append(timed_until(lambda: db.users.find_one({"email": f"{name}@example.com"}, {"password": 1})["password"] != before))
    figures["password"] = changes
    log(f"reaction: {samples} deletions (deletionPolicy Delete)")
    apply_parallel(user_objects(ns, "d", samples, generate=True, extra={"deletionPolicy": "Delete"}), chunks=2)
    timed_until(lambda: sum(1 for o in list_objects(ns, "librechatusers")
                            if o["metadata"]["name"].startswith("d") and is_ready(o)) >= samples, timeout=600, every=2)
    deletions = []
    for i in range(samples):
        email = f"d{i}@example.com"
        kubectl("delete", "librechatuser", f"d{i}", "-n", ns, "--wait=false")
        deletions.append(timed_until(lambda: db.users.find_one({"email": email}, {"_id": 1}) is None))
    figures["deletion"] = deletions

    instance = json.loads(kubectl("get", "librechatinstance", "lc", "-n", ns, "-o", "json"))
    figures["change_feed"] = instance.get("status", {}).get("changeFeed")
    seen = max(10, samples // 5)
    log(f"reaction, the other way ({figures['change_feed']}): {seen} of each")
    for i in range(seen):
        kubectl("apply", "--server-side", "--field-manager=bench", "-f", "-", input=json.dumps({
            "apiVersion": "librechat.ai/v1alpha1", "kind": "UserInvite",
            "metadata": {"name": f"inv{i}", "namespace": ns},
            "spec": {"instanceRef": {"name": "lc"}, "email": f"inv{i}@example.com"}}))
    timed_until(lambda: all(kubectl("get", "userinvite", f"inv{i}", "-n", ns, "-o", "jsonpath={.status.phase}") == "Pending"
                            for i in range(seen)), timeout=300, every=1)
    invites, edits, owner = [], [], []
    phase = lambda i: kubectl("get", "userinvite", f"inv{i}", "-n", ns, "-o", "jsonpath={.status.phase}")
    for i in range(seen):
        now = datetime.datetime.now(datetime.timezone.utc)
        db.users.insert_one({"email": f"inv{i}@example.com", "name": f"Invitee {i}", "username": f"inv{i}",
                             "provider": "local", "role": "USER", "emailVerified": True, "avatar": None,
                             "password": bcrypt.hashpw(b"Invitee-Pass-1", bcrypt.gensalt(10)).decode(),
                             "createdAt": now, "updatedAt": now, "__v": 0})
        invites.append(timed_until(lambda: phase(i) == "Accepted", timeout=400, every=0.05))
    for i in range(2 * samples, 2 * samples + seen):
        email = f"u{i}@example.com"
        db.users.update_one({"email": email}, {"$set": {"name": "Edited by hand"}})
        edits.append(timed_until(lambda: db.users.find_one({"email": email}, {"name": 1})["name"] != "Edited by hand",
                                 timeout=400, every=0.02))
    for i in range(2 * samples + seen, 2 * samples + 2 * seen):
        email = f"u{i}@example.com"
        db.users.delete_one({"email": email})
        owner.append(timed_until(lambda: db.users.find_one({"email": email}, {"_id": 1}) is not None,
                                 timeout=400, every=0.02))
    figures["seen_invite_used"], figures["seen_hand_edit"], figures["seen_owner_deletion"] = invites, edits, owner
    return figures


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


def env_file():
    out = {}
    for line in (ENV_DIR / "env").read_text().splitlines():
        m = re.match(r"export (\w+)=(.*)", line)
        if m:
            out[m.group(1)] = m.group(2).strip("'\"")
    return out


def pid_file(path):
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def mongo_stop_start(seconds, sample):
    data = ENV_DIR / "mongo"
    port = re.search(r":(\d+)/", MONGO_URI).group(1)
    run(["bash", str(ROOT / "tests/env/secantus.sh"), "stop", str(data)])
    seen = sample(seconds)
    run(["bash", str(ROOT / "tests/env/secantus.sh"), "start", port, str(data)], timeout=300)
    return seen


def mongo_stall(seconds, sample):
    pid = pid_file(ENV_DIR / "mongo" / "secantus.pid")
    os.kill(pid, signal.SIGSTOP)
    try:
        return sample(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


def redis_stop_start(seconds, sample):
    port = re.search(r":(\d+)/?$", REDIS_URL.rstrip("/")).group(1)
    run(["redis-cli", "-p", port, "shutdown", "nosave"], check=False)
    seen = sample(seconds)
    run(["redis-server", "--bind", "127.0.0.1", "--port", port, "--daemonize", "yes",
         "--pidfile", str(ENV_DIR / "redis.pid"), "--dir", str(ENV_DIR), "--save", "", "--appendonly", "no",
         "--logfile", str(ENV_DIR / "redis.log")])
    timed_until(lambda: run(["redis-cli", "-p", port, "ping"], check=False).strip() == "PONG", timeout=30, every=0.2)
    return seen


def apiserver_ready(timeout, every):
    """Seconds until the API server answers /readyz with ok (`None`: not within `timeout`)."""
    return timed_until(lambda: run(["kubectl", "get", "--raw", "/readyz"], check=False).strip() == "ok",
                       timeout=timeout, every=every)


def apiserver_restart():
    """Restarts the API server; returns (seconds it took to exit, seconds until the new one was
    ready), which together are how long it was out."""
    pid = pid_file(ENV_DIR / "k8s" / "apiserver.pid")
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    os.kill(pid, signal.SIGTERM)
    exited = timed_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=120, every=0.1)
    log_path = ENV_DIR / "k8s" / "logs" / "kube-apiserver.log"
    proc = subprocess.Popen([a.decode() for a in argv], stdin=subprocess.DEVNULL,
                            stdout=open(log_path, "a"), stderr=subprocess.STDOUT, start_new_session=True)
    (ENV_DIR / "k8s" / "apiserver.pid").write_text(str(proc.pid))
    back = apiserver_ready(timeout=120, every=0.5)
    return exited, back


class FaultTimeline:
    """Accounts in MongoDB every 2 s during the faults phase, and when each fault began and
    ended, for the report and the plot (a stopped or stalled MongoDB shows as a gap)."""

    def __init__(self, db_name, started):
        self.started, self.samples, self.windows = started, [], []
        self.client = pymongo.MongoClient(db_uri(db_name), serverSelectionTimeoutMS=1000,
                                          connectTimeoutMS=1000, socketTimeoutMS=1500)
        self.users = self.client[db_name].users
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def now(self):
        return round(time.time() - self.started, 1)

    def _sample(self):
        while not self.done.is_set():
            try:
                count = self.users.estimated_document_count()
            except pymongo.errors.PyMongoError:
                count = None
            self.samples.append((self.now(), count))
            self.done.wait(2)

    def window(self, name, began):
        self.windows.append({"fault": name, "from_s": round(began - self.started, 1), "to_s": self.now()})

    def stop(self):
        self.done.set()
        self.thread.join()
        self.client.close()
        return {"accounts_in_mongodb": thinned(self.samples), "faults": self.windows}


FAULT_SHARES = (0.03, 0.97)


def fault_schedule(rng, last=None):
    """The faults of the faults phase and when each strikes, as the share of the N accounts in
    MongoDB at that moment: 20 SIGKILLs and the four outages in a random order at random moments
    spread over the cold start (shares drawn uniformly, sorted), then the leader killed under
    leader election, which ends the schedule because from then on two replicas run. `last`
    names an outage that strikes after every other fault, just before the leader is killed."""
    names = ["SIGKILL"] * 20 + ["mongo_stopped", "mongo_stalled", "redis_stopped", "API server restarted"]
    if last is not None:
        names.remove(last)
    rng.shuffle(names)
    if last is not None:
        names.append(last)
    names.append("two replicas, the leader SIGKILLed")
    shares = sorted(rng.uniform(*FAULT_SHARES) for _ in names)
    return list(zip(names, shares))


def wait_for_share(users, share, stuck_after=300):
    """Waits until `share` of the N accounts are in MongoDB; returns how many there were. Strikes
    anyway when the count has not moved for `stuck_after` seconds (the schedule must end)."""
    want, last, moved = math.ceil(share * N), -1, time.time()
    while True:
        try:
            count = users.estimated_document_count()
        except pymongo.errors.PyMongoError:
            count = last
        if count >= want or time.time() - moved > stuck_after:
            return count
        if count != last:
            last, moved = count, time.time()
        time.sleep(0.25)


def faults(results, hash_seconds):
    ns, db_name = f"{PREFIX}-faults", f"bench_{RUN}_faults"
    namespace_with_instance(ns, db_name, resync="60s")
    op = {"current": Operator("faults", ns).start()}
    items = user_objects(ns, "f", N)
    log(f"faults: cold start of {N} accounts with faults injected")
    started = time.time()
    applied = {}
    applier = threading.Thread(target=lambda: applied.update(retries=apply_parallel(items)))
    applier.start()
    record = {"kills": 0, "outages": {}}

    def statuses():
        """What the statuses say now: the instance and a few accounts not yet Ready."""
        try:
            inst = json.loads(kubectl("get", "librechatinstance", "lc", "-n", ns, "-o", "json", timeout=20))
            users = json.loads(kubectl("get", "librechatusers", "-n", ns, "-o", "json", timeout=120))["items"]
        except Exception as e:  # the API server may be the one that is down
            return [f"(API server: {e})"]
        texts = [f"{c['type']}={c['status']} {c['reason']}: {c['message']}" for c in inst.get("status", {}).get("conditions", [])]
        for u in users:
            for c in u.get("status", {}).get("conditions", []):
                if c["type"] == "Ready" and c["status"] != "True":
                    texts.append(f"user {c['reason']}: {c['message']}")
        return texts

    def sample_for(seconds):
        time.sleep(seconds * 0.6)
        seen = statuses()
        time.sleep(seconds * 0.4)
        return seen

    timeline = FaultTimeline(db_name, started)
    schedule = fault_schedule(random.Random(), LAST_OUTAGE)
    record["last_outage_chosen"] = LAST_OUTAGE
    record["schedule"] = []
    users = pymongo.MongoClient(db_uri(db_name), serverSelectionTimeoutMS=2000)[db_name].users

    def kill_and_restart():
        op["current"].kill(signal.SIGKILL)
        record["kills"] += 1
        op["current"] = Operator("faults", ns).start()

    def outage(name, fault, word):
        log(f"faults: {name} for 60 s")
        seen = fault(60, sample_for)
        record["outages"][name] = {"named": any(word in s.lower() for s in seen),
                                   "statuses": sorted(set(seen))[:6]}

    def restart_apiserver():
        log("faults: API server restart")
        record["apiserver_exit_s"], record["apiserver_back_after_s"] = apiserver_restart()

    strike = {
        "SIGKILL": kill_and_restart,
        "mongo_stopped": lambda: outage("mongo_stopped", mongo_stop_start, "mongo"),
        "mongo_stalled": lambda: outage("mongo_stalled", mongo_stall, "mongo"),
        "redis_stopped": lambda: outage("redis_stopped", redis_stop_start, "redis"),
        "API server restarted": restart_apiserver,
    }
    def when_reached(name, share):
        """Waits for the fault's share of accounts, records the strike; returns when it began."""
        reached = wait_for_share(users, share)
        began = time.time()
        record["schedule"].append({"fault": name, "share": round(share, 3), "accounts_then": reached,
                                   "at_s": round(began - started, 1)})
        return began

    # 1-5. Every fault but the last strikes once the share of accounts drawn for it is in MongoDB.
    for name, share in schedule[:-1]:
        began = when_reached(name, share)
        strike[name]()
        timeline.window(name, began)
    # 6. Two replicas with leader election; the leader killed.
    name, share = schedule[-1]
    began = when_reached(name, share)
    log("faults: two replicas with leader election, the leader killed")
    op["current"].kill(signal.SIGTERM)
    lease = ["--leader-elect", "--lease-namespace", ns, "--lease-duration", "10s"]
    replicas = [Operator(f"faults-r{i}", ns, extra_args=lease).start() for i in range(2)]
    timed_until(lambda: any(r.metrics().get("librechat_operator_leader", 0) == 1 for r in replicas), timeout=60, every=0.5)
    leader = next((r for r in replicas if r.metrics().get("librechat_operator_leader", 0) == 1), None)
    if leader:
        leader.kill(signal.SIGKILL)
        survivor = next(r for r in replicas if r is not leader)
        record["takeover_s"] = timed_until(lambda: survivor.metrics().get("librechat_operator_leader", 0) == 1,
                                           timeout=120, every=0.2)
    else:
        survivor = replicas[0]
    last_recovery = time.time()
    cpu_before, api_before = cpu_seconds(survivor), api_requests()
    timeline.window(name, began)
    # What was still to do then: accounts not yet in MongoDB need their hash at least (an
    # account the outages turned not Ready needs none; the new leader's gauge starts at zero).
    record["ready_at_last_recovery"] = sum(is_ready(o) for o in list_objects(ns, "librechatusers"))
    created = pymongo.MongoClient(db_uri(db_name))[db_name].users.count_documents(
        {"email": {"$regex": "^f[0-9]+@example[.]com$"}})
    record["accounts_at_last_recovery"] = created
    remaining = N - created
    record["remaining_hashing_floor_s"] = round(remaining * hash_seconds / CORES, 1)
    took = wait_all_ready(survivor, ns, N, timeout=6 * 3600)
    done = time.time()
    record["convergence_cost"] = convergence_cost(survivor, cpu_before, api_before)
    applier.join()
    record["apply_retries"] = applied.get("retries")
    record["timeline"] = timeline.stop()
    record["cold_start_seconds"] = round(done - started, 1) if took else None
    record["convergence_after_recovery_s"] = round(done - last_recovery, 1) if took else None
    if took:
        record["convergence_beyond_remaining_hashing_s"] = round(
            done - last_recovery - record["remaining_hashing_floor_s"], 1)
    for r in replicas:
        r.kill(signal.SIGTERM)
    # The end state.
    db = pymongo.MongoClient(db_uri(db_name))[db_name]
    emails = [f"f{i}@example.com" for i in range(N)]
    docs = list(db.users.find({"email": {"$in": emails}}, {"email": 1, "password": 1}))
    record["accounts"] = len({d["email"] for d in docs})
    record["duplicates"] = len(docs) - record["accounts"]
    objs = list_objects(ns, "librechatusers")
    record["ready"] = sum(is_ready(o) for o in objs)
    log(f"faults: verifying {len(docs)} passwords with bcrypt")
    by_email = {d["email"]: d.get("password") for d in docs}
    pairs = [(password_of("f", i).encode(), (by_email.get(f"f{i}@example.com") or "").encode()) for i in range(N)]
    with concurrent.futures.ProcessPoolExecutor(CORES) as pool:
        verified = sum(pool.map(verify, pairs, chunksize=64))
    record["passwords_verified"] = verified
    return record


def convergence_cost(survivor, cpu_before, api_before):
    """What the convergence after the last recovery cost: CPU seconds per process, the
    operator's writes through the API server by `VERB resource[/sub]`, and the API server's CPU
    per such write (where the API server runs here), which bounds how fast a survivor can turn
    thousands of statuses back on these cores."""
    cpu_after, api_after = cpu_seconds(survivor), api_requests()
    cpu = {k: round(v - cpu_before.get(k, 0), 1) for k, v in cpu_after.items() if k != "kubectl (applying)"}
    writes = {}
    for (verb, resource, sub), v in api_after.items():
        d = v - api_before.get((verb, resource, sub), 0)
        if resource in OPERATOR_RESOURCES and verb in API_WRITES and d > 0:
            writes[f"{verb} {resource}{'/' + sub if sub else ''}"] = int(d)
    total = sum(writes.values())
    apiserver = cpu.get("kube-apiserver")
    per_write = round(apiserver * 1000 / total, 2) if apiserver and total else None
    return {"cpu_seconds": cpu, "api_writes": writes, "apiserver_cpu_ms_per_write": per_write}


def verify(pair):
    plain, hashed = pair
    try:
        return 1 if hashed and bcrypt.checkpw(plain, hashed) else 0
    except ValueError:
        return 0


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def judged(figures):
    out = {}
    for key, (op, goal) in GOALS.items():
        value = figures.get(key)
        if value is None:
            out[key] = {"goal": f"{op} {goal}", "value": None, "pass": None}
            continue
        ok = value <= goal if op == "≤" else value == goal
        out[key] = {"goal": f"{op} {goal}", "value": value, "pass": bool(ok)}
    return out


def svg_plot(series, path, y_label="accounts Ready", windows=()):
    """Curves over time, one polyline per series (a `None` value is a gap), over shaded
    windows (the faults: `fault`, `from_s`, `to_s`)."""
    w, h, pad = 720, 360, 50
    points = [(t, v) for s in series.values() for t, v in s if v is not None]
    t_max = max([t for t, _ in points] + [wd["to_s"] for wd in windows], default=1) or 1
    y_max = max((v for _, v in points), default=1) or 1
    colors = ["#1f77b4", "#d62728", "#2ca02c"]
    x_of = lambda t: pad + (w - pad - 10) * t / t_max
    y_of = lambda v: h - pad - (h - pad - 10) * v / y_max
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
             f'<rect width="{w}" height="{h}" fill="white"/>']
    # A fault that is a moment (a SIGKILL) is a thin red line, named once in the legend.
    moments = [wd for wd in windows if wd["fault"] == "SIGKILL"]
    for wd in moments:
        parts.append(f'<line x1="{x_of(wd["from_s"]):.1f}" y1="10" x2="{x_of(wd["from_s"]):.1f}" y2="{h - pad}" stroke="#d62728" stroke-opacity="0.5"/>')
    if moments:
        parts.append(f'<text x="{w - 14}" y="24" text-anchor="end" fill="#d62728">| SIGKILL ({len(moments)})</text>')
    spans = [wd for wd in windows if wd["fault"] != "SIGKILL"]
    for k, wd in enumerate(spans):
        x0, x1 = x_of(wd["from_s"]), x_of(wd["to_s"])
        parts.append(f'<rect x="{x0:.1f}" y="10" width="{max(x1 - x0, 1):.1f}" height="{h - pad - 10}" fill="#999" fill-opacity="0.2"/>')
        parts.append(f'<text x="{x0 + 2:.1f}" y="{h - pad - 8 - 14 * (k % 6)}" font-size="10" fill="#555">{wd["fault"]}</text>')
    parts += [f'<line x1="{pad}" y1="{h - pad}" x2="{w - 10}" y2="{h - pad}" stroke="black"/>',
              f'<line x1="{pad}" y1="10" x2="{pad}" y2="{h - pad}" stroke="black"/>',
              f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle">seconds since kubectl apply</text>',
              f'<text x="14" y="{h / 2}" transform="rotate(-90 14 {h / 2})" text-anchor="middle">{y_label}</text>']
    for i in range(5):
        parts.append(f'<text x="{x_of(t_max * i / 4)}" y="{h - pad + 16}" text-anchor="middle">{t_max * i / 4:.0f}</text>')
        parts.append(f'<text x="{pad - 4}" y="{y_of(y_max * i / 4) + 4}" text-anchor="end">{y_max * i / 4:.0f}</text>')
    for k, (name, s) in enumerate(series.items()):
        runs, current = [], []
        for t, v in s:
            if v is None:
                runs, current = runs + [current], []
            else:
                current.append(f"{x_of(t):.1f},{y_of(v):.1f}")
        for run_points in runs + [current]:
            if run_points:
                parts.append(f'<polyline fill="none" stroke="{colors[k % 3]}" stroke-width="2" points="{" ".join(run_points)}"/>')
        parts.append(f'<text x="{pad + 10}" y="{24 + 16 * k}" fill="{colors[k % 3]}">{name}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts))


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    mem = next((int(l.split()[1]) // 1024 for l in Path("/proc/meminfo").read_text().splitlines()
                if l.startswith("MemTotal")), 0)
    versions = {
        "operator": run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=False).strip(),
        "kubernetes": json.loads(kubectl("version", "-o", "json", check=False) or "{}").get("serverVersion", {}).get("gitVersion"),
        "mongodb_server": os.environ.get("BENCH_MONGO_SERVER", "unknown"),
        "redis": " ".join(run(["redis-server", "--version"], check=False).split()[2:3]),
        "node": run(["node", "--version"], check=False).strip(),
    }
    try:
        versions["mongodb_server_version"] = pymongo.MongoClient(MONGO_URI, serverSelectionTimeoutMS=5000).server_info().get("version")
    except Exception:
        pass
    return {"cpu": cpu, "cores": CORES, "memory_mib": mem, "kernel": platform.release(), "versions": versions}


def summary_md(report):
    f, goals = report["figures"], report["goals"]
    rows = ["| figure | value | goal | result |", "|---|---|---|---|"]
    for key, g in goals.items():
        result = {True: "met", False: "**missed**", None: "not measured"}[g["pass"]]
        rows.append(f"| {key} | {g['value'] if g['value'] is not None else '–'} | {g['goal']} | {result} |")
    extra = [f"| {k} | {v} |" for k, v in f.items() if k not in goals and not isinstance(v, (dict, list))]
    m = report["machine"]
    return "\n".join([
        f"# librechat-operator benchmark, {report['date']}",
        "",
        f"N = {report['n']} accounts; {m['cores']} cores ({m['cpu']}), {m['memory_mib']} MiB; "
        f"MongoDB-wire server: {m['versions'].get('mongodb_server')}; Kubernetes {m['versions'].get('kubernetes')}.",
        "",
        *rows,
        "",
        "| other figure | value |",
        "|---|---|",
        *extra,
        "",
        "Notes:",
        *[f"- {n}" for n in report.get("notes", [])],
        "",
        "Accounts Ready over time: [cold-start.svg](cold-start.svg); accounts in MongoDB during the faults, "
        "with each fault's window: [faults.svg](faults.svg). Raw figures: latest.json.",
        "",
    ])


def readme_block(report):
    """The README's summary: the goals, their figures, the date and the machine."""
    m, goals = report["machine"], report["goals"]
    rows = ["| goal | figure | result |", "|---|---|---|"]
    for key, g in goals.items():
        if g["pass"] is None:
            continue
        result = "met" if g["pass"] else "**missed**"
        rows.append(f"| {key} {g['goal']} | {g['value']} | {result} |")
    return "\n".join([
        f"`make bench` on {report['date'][:10]}: N = {report['n']} accounts, {m['cores']} cores "
        f"({m['cpu']}), {m['versions'].get('mongodb_server')}, Kubernetes {m['versions'].get('kubernetes')}. "
        "Every figure, and the ones not measured in that run, in "
        "[bench/results/latest.md](bench/results/latest.md); accounts Ready over time in "
        "[bench/results/cold-start.svg](bench/results/cold-start.svg), and during the faults in "
        "[bench/results/faults.svg](bench/results/faults.svg)."
        + (" Some figures are carried from an earlier run; the results' notes say which."
           if any(n.startswith("carried from") for n in report.get("notes", [])) else ""),
        "",
        *rows,
    ])


def update_readme(report):
    if OUT != ROOT / "bench" / "results":
        return
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        readme.write_text(f"{head}{start}\n{readme_block(report)}\n{end}{tail}")


def previous_run():
    """The last latest.json, when it measured the same N (figures of another N are not comparable)."""
    try:
        earlier = json.loads((OUT / "latest.json").read_text())
    except (OSError, ValueError):
        return None
    return earlier if earlier.get("n") == N else None


def thinned(samples, most=400):
    """A curve kept in latest.json: at most `most` points, the last one always kept."""
    step = max(1, len(samples) // most)
    return samples[::step] + ([samples[-1]] if samples and (len(samples) - 1) % step else [])


def with_carried(report, curves, earlier):
    """The report as written: this run's figures, goals and curves, and, with BENCH_CARRY, the
    earlier result's figures of the phases not measured now. `provenance` names the run and
    build of every figure, so a figure carried twice still names the run that measured it."""
    this_run = {"date": report["date"], "build": report["machine"]["versions"].get("operator")}
    out = dict(report, curves={name: thinned(s) for name, s in curves.items()},
               provenance={k: this_run for k in report["figures"]})
    if earlier:
        its_own = {"date": earlier.get("date"), "build": earlier.get("machine", {}).get("versions", {}).get("operator")}
        measured_by = {k: earlier.get("provenance", {}).get(k, its_own) for k in earlier.get("figures", {})}
        carried = {k: run for k, run in measured_by.items() if k not in report["figures"]}
        out["figures"] = {**earlier["figures"], **report["figures"]}
        out["phases"] = {**earlier.get("phases", {}), **report["phases"]}
        out["curves"] = {**earlier.get("curves", {}), **out["curves"]}
        out["provenance"].update(carried)
        runs = {}
        for key, run in sorted(carried.items()):
            runs.setdefault((run.get("date"), run.get("build")), []).append(key)
        out["notes"] = report["notes"] + [
            f"carried from the run of {date} (operator build {build}), not measured in this one: " + ", ".join(keys)
            for (date, build), keys in sorted(runs.items(), key=lambda kv: str(kv[0]))]
    out["goals"] = judged(out["figures"])
    return out


def main():
    atexit.register(stop_operators)
    signal.signal(signal.SIGTERM, stop_operators)
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "n": N,
              "machine": machine(), "figures": {}, "notes": [], "phases": {}}
    f, notes = report["figures"], report["notes"]
    kubectl("apply", "-f", str(ROOT / "crds"))

    def phase(name, fn):
        if name not in PHASES:
            return None
        try:
            return fn()
        except Exception as e:  # a phase that fails is reported, the others still run
            notes.append(f"phase {name} failed: {e}")
            log(f"phase {name} failed: {e}")
            return None

    curves = {}
    earlier = previous_run() if CARRY else None

    def save():
        """Writes what is measured so far: a run cut short still leaves its figures."""
        out = with_carried(report, curves, earlier)
        (OUT / "latest.json").write_text(json.dumps(out, indent=2, default=str))
        if out["curves"]:
            svg_plot(out["curves"], OUT / "cold-start.svg")
        (OUT / "latest.md").write_text(summary_md(out))
        update_readme(out)

    floor = bcrypt_floor()
    f.update({"bcrypt_cost10_ms": round(floor["bcrypt_cost10_seconds"] * 1000, 2),
              "bcrypt_cost10_ms bcrypt crate, alone": round(floor["measured"]["crate"] * 1000, 2),
              "bcrypt_cost10_ms operator, alone": round(floor["measured"]["operator_alone"] * 1000, 2),
              "bcrypt_cost10_ms operator, four interleaved, per hash": round(floor["measured"]["operator_interleaved"] * 1000, 2),
              "floor_seconds": round(floor["floor_seconds"], 1)})
    op_a = None
    got = phase("coldstart", lambda: cold_start(report, "a", generate=False))
    if got:
        op_a, a = got
        curves["secretRef"] = a["samples"]
        f["cold_start_seconds"] = round(a["seconds"], 1) if a["seconds"] else None
        f["peak_rss_mib"] = a["peak_rss_mib"]
        f["peak_rss_mib_cold_start"] = a["peak_rss_mib"]
        f["rss_mib_at_ready"] = a["memory_mib_at"]
        # Where the cold start's CPU went: the floor counts only bcrypt, on every core.
        report["phases"]["coldstart"] = {"cpu_seconds": a["cpu_seconds"], "bcrypt_hashes": a["bcrypt_hashes"],
                                         "api_requests_per_account": a["api_requests_per_account"],
                                         "reconciles_per_account": a["reconciles_per_account"],
                                         "profile": a["profile"]}
        if a["profile"]:
            (OUT / "profile-coldstart.md").write_text(profile_md(a["profile"]))
            f["cold_start_operator_cpu_in_bcrypt_percent"] = a["profile"]["operator_hashing_percent"]
        for proc, secs in sorted(a["cpu_seconds"].items(), key=lambda kv: -kv[1]):
            f[f"cold_start_cpu_s {proc}"] = secs
        f["cold_start_cpu_s bcrypt (hashes x one hash)"] = round(a["bcrypt_hashes"] * floor["bcrypt_cost10_seconds"], 1)
        if a["seconds"]:
            f["cold_start_vs_floor"] = ratio(a["seconds"], floor["floor_seconds"])
        save()
        lc = phase("librechat", librechat_batch)
        if lc:
            f["librechat_batch_seconds"] = round(lc, 1)
            if a["seconds"]:
                f["cold_start_vs_librechat"] = ratio(a["seconds"], lc)
    if op_a and "resync" in PHASES:
        got = phase("resync", lambda: resync_and_restart(op_a, f"{PREFIX}-a"))
        if got:
            op_a, r = got
            report["phases"]["resync"] = r
            f["resync_wall_seconds"] = r["resync"]["wall_seconds"]
            f["resync_writes"] = r["resync"]["writes"]
            f["resync_mongo_reads_per_account"] = r["resync"]["mongo_reads_per_account"]
            f["resync_api_requests_per_account"] = r["resync"]["api_requests_per_account"]
            f["restart_wall_seconds"] = r["restart"]["wall_seconds"]
            f["restart_writes"] = r["restart"]["writes"]
            f["restart_mongo_reads_per_account"] = r["restart"]["mongo_reads_per_account"]
            f["restart_api_requests_per_account"] = r["restart"]["api_requests_per_account"]
    save()
    if op_a and "reaction" in PHASES:
        got = phase("reaction", lambda: reaction(op_a, f"{PREFIX}-a", f"bench_{RUN}_a", samples=min(100, N // 4)))
        if got:
            report["phases"]["reaction"] = got
            f["change_feed"] = got.pop("change_feed", None)
            for key, values in got.items():
                ok = [v for v in values if v is not None]
                f[f"{key}_p50_s"] = round(percentile(ok, 50), 3) if ok else None
                f[f"{key}_p99_s"] = round(percentile(ok, 99), 3) if ok else None
                if len(ok) < len(values):
                    notes.append(f"{key}: {len(values) - len(ok)} of {len(values)} not seen within the wait")
    save()
    if op_a:
        op_a.kill(signal.SIGTERM)
        # Which process peaked: the cold start's (through the forced resync), or the one
        # restarted over N Ready accounts (through the reaction phase).
        through_resync = report["phases"].get("resync", {}).get("peak_rss_mib_through_resync")
        if through_resync:
            f["peak_rss_mib_through_resync"] = through_resync
            f["peak_rss_mib_restarted"] = round(op_a.peak_kib / 1024, 1)
        f["peak_rss_mib"] = max(f.get("peak_rss_mib") or 0, through_resync or 0, round(op_a.peak_kib / 1024, 1))
    got = phase("generate", lambda: cold_start(report, "b", generate=True))
    if got:
        op_b, b = got
        op_b.kill(signal.SIGTERM)
        report["phases"]["generate"] = {"cpu_seconds": b["cpu_seconds"], "bcrypt_hashes": b["bcrypt_hashes"],
                                        "api_requests_per_account": b["api_requests_per_account"],
                                        "reconciles_per_account": b["reconciles_per_account"]}
        curves["password.generate"] = b["samples"]
        f["cold_start_generate_seconds"] = round(b["seconds"], 1) if b["seconds"] else None
        if b["seconds"]:
            f["cold_start_generate_vs_floor"] = ratio(b["seconds"], floor["floor_seconds"])
            # LibreChat's own path, measured in this run or carried from the earlier one.
            librechat = f.get("librechat_batch_seconds") or (earlier or {}).get("figures", {}).get("librechat_batch_seconds")
            if librechat:
                f["cold_start_generate_vs_librechat"] = ratio(b["seconds"], librechat)
                if not f.get("librechat_batch_seconds"):
                    notes.append("cold_start_generate_vs_librechat: this run's generate cold start over the carried "
                                 "librechat_batch_seconds")
    save()
    got = phase("faults", lambda: faults(report, floor["bcrypt_cost10_seconds"]))
    if got:
        report["phases"]["faults"] = got
        f["faults_accounts_exact"] = got["accounts"] == N
        f["faults_duplicates"] = got["duplicates"]
        f["faults_passwords_verify"] = got["passwords_verified"] == N
        f["faults_all_ready"] = got["ready"] == N
        f["faults_outages_named"] = all(o["named"] for o in got["outages"].values())
        f["faults_convergence_after_recovery_s"] = got["convergence_after_recovery_s"]
        f["faults_cold_start_seconds"] = got["cold_start_seconds"]
        f["faults_ready_at_last_recovery"] = got.get("ready_at_last_recovery")
        f["faults_remaining_hashing_floor_s"] = got.get("remaining_hashing_floor_s")
        f["faults_convergence_beyond_remaining_hashing_s"] = got.get("convergence_beyond_remaining_hashing_s")
        f["faults_accounts_at_last_recovery"] = got.get("accounts_at_last_recovery")
        # The same remaining accounts at the undisturbed cold start's own pace (this run's), so
        # that what is left is what the recovery itself cost: a backoff tail shows here.
        # A faults-only run (BENCH_CARRY) takes the pace of the cold start it carries.
        carried_calm = (earlier or {}).get("figures", {}).get("cold_start_seconds")
        created, calm = got.get("accounts_at_last_recovery"), f.get("cold_start_seconds") or carried_calm
        if created is not None and calm and got["convergence_after_recovery_s"] is not None:
            at_pace = (N - created) * calm / N
            f["faults_remaining_at_cold_start_pace_s"] = round(at_pace, 1)
            f["faults_convergence_beyond_cold_start_pace_s"] = round(got["convergence_after_recovery_s"] - at_pace, 1)
        cost = got.get("convergence_cost") or {}
        f["faults_convergence_api_writes"] = sum((cost.get("api_writes") or {}).values()) or None
        f["faults_convergence_apiserver_cpu_s"] = (cost.get("cpu_seconds") or {}).get("kube-apiserver")
        f["faults_convergence_apiserver_cpu_ms_per_write"] = cost.get("apiserver_cpu_ms_per_write")
        f["faults_leader_takeover_s"] = round(got["takeover_s"], 1) if got.get("takeover_s") else None
        # Which fault came last before the leader kill: it decides what the take-over finds.
        before = [s["fault"] for s in got.get("schedule", []) if s["fault"] != "SIGKILL"][-2:-1]
        if before:
            chosen = " (chosen: BENCH_LAST_OUTAGE)" if got.get("last_outage_chosen") else " (drawn)"
            f["faults_last_outage_before_takeover"] = before[0] + chosen
        f["faults_apiserver_out_s"] = round((got.get("apiserver_exit_s") or 0) + (got.get("apiserver_back_after_s") or 0), 1)
        if got.get("timeline"):
            svg_plot({"accounts in MongoDB": got["timeline"]["accounts_in_mongodb"]}, OUT / "faults.svg",
                     y_label="accounts in MongoDB", windows=got["timeline"]["faults"])
    save()
    log(f"results: {OUT / 'latest.md'}")
    print((OUT / "latest.md").read_text())


if __name__ == "__main__":
    main()
