"""``vla-pruner bench-node --two-host``: the camera and the arm on one host, ``vla_node`` on another.

Three Linux network namespaces stand in for two machines and the cable between them:

- host A: a camera publisher, the instruction, and a minimal arm (a perfect position controller: its
  pose is the last ``~/ee_target`` it received, published as ``ee_pose``), which records the action
  chunks and targets that reach it;
- host B: ``vla_node`` and a local recorder of its outputs and diagnostics (what the node did,
  whatever the link lost);
- the link: two veth pairs meet in a third namespace, A <-> link <-> B.

Fast DDS talks UDPv4 only (``FASTDDS_BUILTIN_TRANSPORTS=UDPv4``: shared memory would otherwise carry
the data through /dev/shm, past the link) and discovers across the link by multicast. The link
delays and drops with the kernel's netem qdisc when the kernel has it; otherwise (no ``sch_netem``)
a userspace relay in the link namespace bridges the two inner veth ends with AF_PACKET sockets,
applying a fixed one-way delay and independent random loss to every Ethernet frame. Either way the
emulation is checked first with UDP echo probes (round-trip time, loss, and a cut that loses all).

One run, in sequence: a clean link; ``delay_ms`` each way with ``loss`` per frame and direction; the
link cut for ``cut_s`` (every frame lost); the impaired link again. ``run_two_host`` returns the
figures per phase; ``format_report`` prints them.

Namespaces are named ``vla2h<pid><host>``, removed in ``finally``, and removed with whatever still
runs in them at the next start when the process that made them is gone.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .node_bench import node_command, write_json

PREFIX = "vla2h"
A_IP, B_IP, NETMASK = "10.213.0.1", "10.213.0.2", 24
A_MAC, B_MAC = "02:00:0a:d5:00:01", "02:00:0a:d5:00:02"
DOMAIN_ID = 42  # each run has its own network namespaces: no other participant can hear it
ECHO_PORT = 5999
DIAG_PERIOD_S = 0.5
POSE_HZ = 20.0
WORKSPACE_M = 1000.0  # the run's workspace box: 0.05 m a step at 10 Hz for minutes never reaches its walls
START_POSE = (0.0, 0.0, WORKSPACE_M / 2)  # the arm's first pose, in the middle of the box
MOTION_EPS = 1e-9
# ROS 2's DDS tuning advice for large messages over lossy links: IP fragments of lost datagrams are
# dropped after 3 s (kernel default 30 s) and may use 128 MB (default 4 MB) meanwhile
IPFRAG_TUNING = {"ipfrag_time": 3, "ipfrag_high_thresh": 128 << 20}
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

_NS_RE = re.compile(rf"^{PREFIX}(\d+)(A|B|L|probe)$")


class TwoHostUnavailable(ValueError):
    """This machine cannot make network namespaces (not root, no iproute2, no veth)."""


# ---- namespaces and the link -----------------------------------------------------------------------
def _run(argv: list[str], check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def _delete_namespace(name: str) -> None:
    """Kill what still runs in the namespace (it was made by a run of this module), then delete it."""
    pids = _run(["ip", "netns", "pids", name], check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _run(["ip", "netns", "del", name], check=False)


def clean_stale() -> list[str]:
    """Delete namespaces of earlier runs whose process is gone (a crash, a kill -9). Returns their names."""
    out = _run(["ip", "netns", "list"], check=False).stdout
    removed = []
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NS_RE.match(name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            _delete_namespace(name)
            removed.append(name)
    return removed


def probe_host() -> tuple[str | None, bool]:
    """(why network namespaces cannot be used here or None, whether the kernel has netem)."""
    if os.geteuid() != 0:
        return "network namespaces need root (this process is not root)", False
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed", False
    name = f"{PREFIX}{os.getpid()}probe"
    r = _run(["ip", "netns", "add", name], check=False)
    if r.returncode != 0:
        return f"`ip netns add` failed: {r.stderr.strip()}", False
    try:
        r = _run(["ip", "-n", name, "link", "add", "p0", "type", "veth", "peer", "name", "p1"], check=False)
        if r.returncode != 0:
            return f"cannot create a veth pair: {r.stderr.strip()}", False
        r = _run(["ip", "netns", "exec", name, "true"], check=False)
        if r.returncode != 0:
            return f"cannot run a process in a network namespace (`ip netns exec`): {r.stderr.strip()}", False
        _run(["ip", "-n", name, "link", "set", "lo", "up"], check=False)
        netem = shutil.which("tc") is not None and _run(
            ["tc", "-n", name, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
            check=False).returncode == 0
        if not netem:
            try:  # the userspace relay needs AF_PACKET sockets
                socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)).close()
            except OSError as err:
                return f"the kernel has no netem qdisc and AF_PACKET sockets fail ({err})", False
        return None, netem
    finally:
        _run(["ip", "netns", "del", name], check=False)


class _Proc:
    """A subprocess with line-wise stdin/stdout (reads with a timeout) and stderr in a file."""

    def __init__(self, argv: list[str], env: dict, err_path: Path) -> None:
        self.err_path = err_path
        self._err = open(err_path, "wb")  # noqa: SIM115 (closed in stop)
        # cwd: ``python -m`` puts the working directory first on sys.path; there, this copy of the package
        self.p = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
                                  cwd=PACKAGE_ROOT)
        self._buf = b""

    def send(self, line: str) -> None:
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()

    def readline(self, timeout: float) -> str | None:
        end = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.p.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.p.stdout.fileno(), 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def expect(self, prefix: str, timeout: float, what: str) -> str:
        end = time.monotonic() + timeout
        while True:
            line = self.readline(max(0.0, end - time.monotonic()))
            if line is None:
                state = "exited" if self.p.poll() is not None else "running"
                raise RuntimeError(f"{what}: no {prefix!r} line within {timeout:.0f} s ({state}); its stderr:\n"
                                   f"{self.stderr_tail()}")
            if line.startswith(prefix):
                return line

    def stderr_tail(self, n: int = 3000) -> str:
        self._err.flush()
        return self.err_path.read_text(errors="replace")[-n:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.p.poll() is None:
            try:
                self.p.send_signal(sig)
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=10)
        for f in (self.p.stdin, self.p.stdout):
            with contextlib.suppress(OSError):
                f.close()
        self._err.close()
        return self.p.returncode


class Link:
    """Namespaces A, B and a link namespace L; veth A:a0 <-> L:la and B:b0 <-> L:lb; 10.213.0.0/24.

    ``set(delay_ms, loss)`` impairs both directions; ``cut()`` loses every frame until ``restore()``
    (frames already in flight still arrive, as on a real wire).
    """

    def __init__(self, mode: str = "auto", tmp: Path | None = None, seed: int = 0, ipfrag_tuning: bool = False) -> None:
        if mode not in ("auto", "netem", "relay"):
            raise ValueError(f"link mode {mode!r}: auto, netem or relay")
        self.mode, self.seed, self.ipfrag_tuning = mode, seed, ipfrag_tuning
        self.ipfrag: dict[str, int] = {}
        self._own_tmp = tmp is None  # a directory made here is removed in close()
        self.tmp = tmp or Path(tempfile.mkdtemp(prefix=PREFIX))
        pid = os.getpid()
        self.ns = {h: f"{PREFIX}{pid}{h}" for h in "ABL"}
        self.relay: _Proc | None = None
        self.delay_ms, self.loss, self.is_cut = 0.0, 0.0, False

    def exec_argv(self, host: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns[host], *argv]

    def open(self) -> Link:
        reason, netem = probe_host()
        if reason:
            raise TwoHostUnavailable(reason)
        if self.mode == "netem" and not netem:
            raise TwoHostUnavailable("the kernel has no netem qdisc (sch_netem)")
        self.mode = "netem" if self.mode == "auto" and netem else ("relay" if self.mode == "auto" else self.mode)
        clean_stale()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        a, b, link = self.ns["A"], self.ns["B"], self.ns["L"]
        for ns in (a, b, link):
            _run(["ip", "netns", "add", ns])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        for host, dev, peer, ip, mac in ((a, "a0", "la", A_IP, A_MAC), (b, "b0", "lb", B_IP, B_MAC)):
            _run(["ip", "-n", host, "link", "add", dev, "address", mac, "type", "veth", "peer", "name", peer,
                  "netns", link])
            _run(["ip", "-n", host, "addr", "add", f"{ip}/{NETMASK}", "dev", dev])
            _run(["ip", "-n", host, "link", "set", dev, "up"])
            _run(["ip", "-n", host, "route", "add", "224.0.0.0/4", "dev", dev])  # DDS discovery multicast
            _run(["ip", "-n", link, "link", "set", peer, "up"])
        for host in (a, b):
            for name, value in IPFRAG_TUNING.items() if self.ipfrag_tuning else ():
                _run(["ip", "netns", "exec", host, "sh", "-c", f"echo {value} > /proc/sys/net/ipv4/{name}"])
        self.ipfrag = {name: int(_run(["ip", "netns", "exec", b, "cat", f"/proc/sys/net/ipv4/{name}"]).stdout)
                       for name in IPFRAG_TUNING}
        # static neighbours: address resolution must not depend on the impaired link
        _run(["ip", "-n", a, "neigh", "replace", B_IP, "lladdr", B_MAC, "dev", "a0", "nud", "permanent"])
        _run(["ip", "-n", b, "neigh", "replace", A_IP, "lladdr", A_MAC, "dev", "b0", "nud", "permanent"])
        if self.mode == "netem":
            _run(["ip", "-n", link, "link", "add", "br0", "type", "bridge"])
            for dev in ("la", "lb"):
                _run(["ip", "-n", link, "link", "set", dev, "master", "br0"])
                _run(["tc", "-n", link, "qdisc", "add", "dev", dev, "root", "netem", "delay", "0ms"])
            _run(["ip", "-n", link, "link", "set", "br0", "up"])
        else:
            self.relay = _Proc(self.exec_argv("L", [sys.executable, "-m", "vla_pruner_ros.bench.two_host", "relay",
                                                    "la", "lb", str(self.seed)]),
                               _env(), self.tmp / "relay.err")
            self.relay.expect("ready", 15.0, "the link relay")

    def _relay_cmd(self, line: str) -> str:
        self.relay.send(line)
        return self.relay.expect("ok", 5.0, f"the link relay ({line})")

    def _netem(self, delay_ms: float, loss: float) -> None:
        for dev in ("la", "lb"):  # la's egress carries B -> A, lb's A -> B
            _run(["tc", "-n", self.ns["L"], "qdisc", "change", "dev", dev, "root", "netem",
                  "delay", f"{delay_ms:g}ms", "loss", f"{100.0 * loss:g}%"])

    def set(self, delay_ms: float, loss: float) -> None:
        self.delay_ms, self.loss, self.is_cut = float(delay_ms), float(loss), False
        if self.mode == "netem":
            self._netem(delay_ms, loss)
        else:
            self._relay_cmd(f"set {delay_ms} {loss}")

    def cut(self) -> None:
        self.is_cut = True
        if self.mode == "netem":
            self._netem(self.delay_ms, 1.0)
        else:
            self._relay_cmd("cut")

    def restore(self) -> None:
        self.set(self.delay_ms, self.loss)

    def stats(self) -> dict:
        if self.mode == "netem":
            out = {}
            for dev in ("la", "lb"):
                text = _run(["tc", "-s", "-n", self.ns["L"], "qdisc", "show", "dev", dev]).stdout
                m = re.search(r"Sent \d+ bytes (\d+) pkt \(dropped (\d+)", text)
                out["b_to_a" if dev == "la" else "a_to_b"] = (
                    {"forwarded": int(m.group(1)), "dropped": int(m.group(2))} if m else {"tc": text})
            return out
        return json.loads(self._relay_cmd("stats")[len("ok "):])

    def describe(self) -> str:
        if self.mode == "netem":
            return "kernel netem qdisc on both ends of a bridge in the link namespace"
        return ("userspace relay in the link namespace (the kernel has no netem): AF_PACKET sockets on the two "
                "veth ends, fixed one-way delay and independent random loss per Ethernet frame")

    def close(self) -> None:
        if self.relay is not None:
            with contextlib.suppress(OSError):
                self.relay.send("quit")
            self.relay.stop()
            self.relay = None
        for ns in self.ns.values():
            _delete_namespace(ns)
        if self._own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Link:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def frag_memory(pid: int) -> int:
    """Bytes held by incomplete IP datagrams (fragments awaiting reassembly) in the network namespace of ``pid``."""
    m = re.search(r"^FRAG: inuse \d+ memory (\d+)", Path(f"/proc/{pid}/net/sockstat").read_text(), re.M)
    return int(m.group(1)) if m else 0


def reassembly_counts(pid: int) -> dict[str, int]:
    """IP reassembly counters of the network namespace of ``pid`` (/proc/net/snmp)."""
    rows = [line.split()[1:] for line in Path(f"/proc/{pid}/net/snmp").read_text().splitlines()
            if line.startswith("Ip:")]
    ip = dict(zip(rows[0], rows[1], strict=True))
    return {k: int(ip[k]) for k in ("ReasmReqds", "ReasmOKs", "ReasmFails", "ReasmTimeout")}


def _env() -> dict:
    """The environment of every process in the namespaces: UDPv4 only, multicast discovery, this package."""
    env = dict(os.environ)
    for k in ("ROS_LOCALHOST_ONLY", "ROS_STATIC_PEERS", "FASTRTPS_DEFAULT_PROFILES_FILE",
              "FASTDDS_DEFAULT_PROFILES_FILE", "RMW_FASTRTPS_USE_QOS_FROM_XML", "ROS_DISCOVERY_SERVER"):
        env.pop(k, None)
    env.update(ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE="SUBNET",
               FASTDDS_BUILTIN_TRANSPORTS="UDPv4", RMW_IMPLEMENTATION="rmw_fastrtps_cpp", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([PACKAGE_ROOT, *filter(None, [env.get("PYTHONPATH")])]))
    return env


# ---- the userspace link relay (runs in the link namespace) ---------------------------------------
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15  # frames carry a virtio-net header: checksum offload state passes through unchanged
PACKET_OUTGOING = 4


def _packet_socket(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((ifname, ETH_P_ALL))
    s.setblocking(False)
    return s


def relay_main(argv: list[str]) -> None:
    """Bridge Ethernet frames between two interfaces with a delay and random loss; commands on stdin:
    ``set DELAY_MS LOSS``, ``cut``, ``stats``, ``quit``; each answered by a line starting ``ok``."""
    names = argv[:2]
    rng = random.Random(int(argv[2]) if len(argv) > 2 else 0)
    socks = [_packet_socket(n) for n in names]
    keys = ["a_to_b", "b_to_a"]  # frames arriving on the first interface come from host A
    counts = {k: {"received": 0, "forwarded": 0, "lost": 0, "cut": 0, "send_errors": 0} for k in keys}
    delay, loss, cut = 0.0, 0.0, False
    queue: list[tuple[float, int, int, bytes]] = []
    seq = 0
    stdin = sys.stdin.fileno()
    pending = b""
    print("ready", flush=True)
    while True:
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else 1.0
        ready = select.select([*socks, stdin], [], [], timeout)[0]
        for fd in ready:
            if fd == stdin:
                data = os.read(stdin, 4096)
                if not data:
                    return
                pending += data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    words = line.decode().split()
                    if not words:
                        continue
                    if words[0] == "set":
                        delay, loss, cut = float(words[1]) / 1000.0, float(words[2]), False
                    elif words[0] == "cut":
                        cut = True
                    elif words[0] == "quit":
                        return
                    print("ok " + json.dumps(counts) if words[0] == "stats" else "ok", flush=True)
                continue
            i = socks.index(fd)
            c = counts[keys[i]]
            while True:
                try:
                    frame, addr = fd.recvfrom(1 << 17)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:  # our own sends on this interface
                    continue
                c["received"] += 1
                if cut:
                    c["cut"] += 1
                elif loss > 0 and rng.random() < loss:
                    c["lost"] += 1
                else:
                    seq += 1
                    heapq.heappush(queue, (time.monotonic() + delay, seq, 1 - i, frame))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, j, frame = heapq.heappop(queue)
            c = counts[keys[1 - j]]
            try:
                socks[j].send(frame)
                c["forwarded"] += 1
            except OSError:
                c["send_errors"] += 1


# ---- UDP echo probes across the link --------------------------------------------------------------
def echo_main(argv: list[str]) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((argv[0], int(argv[1])))
    print("ready", flush=True)
    while True:
        data, addr = s.recvfrom(2048)
        s.sendto(data, addr)


def probe_main(argv: list[str]) -> None:
    """Send N numbered datagrams at an interval to an echo server; print sent, received and RTTs as JSON."""
    host, port, n, interval = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    wait = float(argv[4]) if len(argv) > 4 else 1.0
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    sent: dict[int, float] = {}
    rtts: dict[int, float] = {}

    def drain() -> None:
        while True:
            try:
                data = s.recv(2048)
            except BlockingIOError:
                return
            k = int(data.split(b" ")[0])
            if k in sent and k not in rtts:
                rtts[k] = 1000.0 * (time.monotonic() - sent[k])

    start = time.monotonic()
    for k in range(n):
        sent[k] = time.monotonic()
        s.sendto(f"{k} probe".encode(), (host, port))
        while time.monotonic() < start + (k + 1) * interval:
            select.select([s], [], [], max(0.0, start + (k + 1) * interval - time.monotonic()))
            drain()
    end = time.monotonic() + wait
    while time.monotonic() < end and len(rtts) < n:
        select.select([s], [], [], max(0.0, end - time.monotonic()))
        drain()
    print(json.dumps({"sent": n, "received": len(rtts), "rtt_ms": sorted(rtts.values())}), flush=True)


def _probe(link: Link, n: int, interval: float, wait: float) -> dict:
    argv = link.exec_argv("A", [sys.executable, "-m", "vla_pruner_ros.bench.two_host", "probe", B_IP,
                                str(ECHO_PORT), str(n), str(interval), str(wait)])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=_env(), cwd=PACKAGE_ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"echo probe failed: {r.stderr[-2000:]}")
    d = json.loads(r.stdout.strip().splitlines()[-1])
    rtt = np.asarray(d.pop("rtt_ms"))
    d["lost"] = d["sent"] - d["received"]
    d["rtt_ms"] = {"p50": round(float(np.percentile(rtt, 50)), 2), "min": round(float(rtt.min()), 2),
                   "max": round(float(rtt.max()), 2)} if len(rtt) else None
    return d


def check_link(link: Link, delay_ms: float, loss: float) -> dict:
    """The emulation itself, by UDP echo from A to B: clean, impaired (RTT ~2x delay, some loss), cut (all
    lost). Leaves the link clean."""
    echo = _Proc(link.exec_argv("B", [sys.executable, "-m", "vla_pruner_ros.bench.two_host", "echo", B_IP,
                                      str(ECHO_PORT)]), _env(), link.tmp / "echo.err")
    try:
        echo.expect("ready", 15.0, "the echo server")
        link.set(0.0, 0.0)
        out = {"clean": _probe(link, 50, 0.01, 0.5)}
        link.set(delay_ms, loss)
        out["impaired"] = _probe(link, 300, 0.005, 1.0 + 2e-3 * delay_ms)
        link.cut()
        out["cut"] = _probe(link, 30, 0.01, 0.5 + 2e-3 * delay_ms)
        link.set(0.0, 0.0)
        return out
    finally:
        echo.stop(signal.SIGKILL)


# ---- the processes on host A and the recorder on host B --------------------------------------------
def _stop_event() -> threading.Event:
    """Set when a ``stop`` line (or end of file) arrives on stdin."""
    ev = threading.Event()

    def watch() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        ev.set()

    threading.Thread(target=watch, daemon=True).start()
    return ev


def _spin_until(executor, ev: threading.Event) -> None:
    while not ev.is_set():
        executor.spin_once(timeout_sec=0.05)


def host_a_main(argv: list[str]) -> None:
    """Camera + instruction + arm: frames at ``camera_hz``, the arm's pose is its last received target."""
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory

    cfg = json.loads(argv[0])
    ns, size, out = cfg["ns"], int(cfg["size"]), cfg["out"]
    stop = _stop_event()
    rclpy.init()
    node = rclpy.create_node("host_a", namespace=ns)
    clock = node.get_clock()
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_publisher(String, "instruction", latched).publish(String(data=cfg["instruction"]))
    image_pub = node.create_publisher(Image, "image", qos_profile_sensor_data)
    pose_pub = node.create_publisher(PoseStamped, "ee_pose", 10)
    pose = PoseStamped()
    pose.header.frame_id = "base_link"
    pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = START_POSE
    pose.pose.orientation.w = 1.0
    base = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    rec: dict[str, list] = {"sent": [], "chunks": [], "chunks_best_effort": [], "targets": []}

    def now() -> float:
        return clock.now().nanoseconds * 1e-9

    def on_camera() -> None:
        n = len(rec["sent"])
        msg = Image(height=size, width=size, encoding="rgb8", step=size * 3,
                    data=np.roll(base, n % size, axis=1).tobytes())
        msg.header.stamp = clock.now().to_msg()
        msg.header.frame_id = "camera"
        image_pub.publish(msg)
        rec["sent"].append(msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec)

    def on_pose() -> None:
        pose.header.stamp = clock.now().to_msg()
        pose_pub.publish(pose)

    def on_chunk(msg: JointTrajectory) -> None:
        if not rec["chunks"]:
            print("chunk", flush=True)
        rec["chunks"].append((now(), msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec))

    def on_target(msg: PoseStamped) -> None:
        p = msg.pose.position
        rec["targets"].append((now(), msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec, p.x, p.y, p.z))
        pose.pose = msg.pose  # a perfect position controller

    node.create_subscription(JointTrajectory, f"{ns}/vla_node/action_chunk", on_chunk, 50)
    # a second reader of the chunks, best effort: no repair of lost samples, so no wait behind them
    best_effort = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)
    node.create_subscription(JointTrajectory, f"{ns}/vla_node/action_chunk", lambda m: rec["chunks_best_effort"].append(
        (now(), m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec)), best_effort)
    node.create_subscription(PoseStamped, f"{ns}/vla_node/ee_target", on_target, 50)
    node.create_timer(1.0 / float(cfg["camera_hz"]), on_camera)
    node.create_timer(1.0 / POSE_HZ, on_pose)
    print("ready", flush=True)
    _spin_and_save(node, stop, out, rec)


def _spin_and_save(node, stop, out: str, rec: dict) -> None:
    """Spin a recorder node until told to stop, write what it recorded, shut down."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor()
    executor.add_node(node)
    _spin_until(executor, stop)
    write_json(out, rec)
    print("done", flush=True)
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()


def monitor_main(argv: list[str]) -> None:
    """Host B's recorder: the node's chunks, targets and diagnostics as the node published them."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseStamped
    from trajectory_msgs.msg import JointTrajectory

    cfg = json.loads(argv[0])
    ns, out = cfg["ns"], cfg["out"]
    stop = _stop_event()
    rclpy.init()
    node = rclpy.create_node("recorder", namespace=ns)
    clock = node.get_clock()
    rec: dict[str, list] = {"chunks": [], "targets": [], "diags": []}

    def now() -> float:
        return clock.now().nanoseconds * 1e-9

    def stamp(msg) -> float:
        return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec

    def on_diag(msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.name.startswith(f"{ns}/vla_node"):
                if not rec["diags"]:
                    print("ready", flush=True)
                rec["diags"].append({"t": stamp(msg), "message": st.message,
                                     "values": {kv.key: kv.value for kv in st.values}})

    def on_target(msg: PoseStamped) -> None:
        p = msg.pose.position
        rec["targets"].append((now(), stamp(msg), p.x, p.y, p.z))

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
    node.create_subscription(JointTrajectory, f"{ns}/vla_node/action_chunk",
                             lambda m: rec["chunks"].append((now(), stamp(m))), 50)
    node.create_subscription(PoseStamped, f"{ns}/vla_node/ee_target", on_target, 50)
    _spin_and_save(node, stop, out, rec)


# ---- the run ----------------------------------------------------------------------------------------
def run_two_host(model: str = "tiny", seconds: float = 10.0, camera_hz: float = 30.0, rate_hz: float = 10.0,
                 method: str = "vla_pruner", keep_ratio: float = 0.25, replan_steps: int = 2, size: int = 64,
                 progress=None, delay_ms: float = 50.0, loss: float = 0.05, cut_s: float = 2.0,
                 recover_s: float = 5.0, link_mode: str = "auto", image_timeout_s: float = 0.5,
                 max_step: float = 0.05, instruction: str = "pick up the red cube", ipfrag_tuning: bool = False,
                 node_threads: int | None = None, raw_dir: str | None = None) -> dict:
    """Clean link for ``seconds``, impaired for ``seconds``, cut for ``cut_s``, impaired for ``recover_s``.

    ``ipfrag_tuning``: both hosts get ``IPFRAG_TUNING`` instead of the kernel's IP reassembly defaults.
    ``node_threads``: the node's torch intra-op threads (``OMP_NUM_THREADS``); None = torch's default, one
    per core, with which any other busy process on a small machine stretches the policy tick many times.
    ``raw_dir``: also keep what hosts A and B recorded (a.json, b.json) and the phase times there."""
    with tempfile.TemporaryDirectory(prefix=PREFIX) as tmp_dir:
        tmp = Path(tmp_dir)
        ns = "/twohost"
        extra = {"pose_feedback": "true", "dry_run": "false", "safety.image_timeout_s": float(image_timeout_s),
                 "safety.max_translation_step": float(max_step), "diagnostics_period_s": DIAG_PERIOD_S,
                 "safety.workspace_min": f"[{-WORKSPACE_M}, {-WORKSPACE_M}, 0.0]",
                 "safety.workspace_max": f"[{WORKSPACE_M}, {WORKSPACE_M}, {WORKSPACE_M}]"}
        procs: dict[str, _Proc] = {}
        phases: dict[str, tuple[float, float]] = {}
        node_rc, stopped = None, False
        link = Link(link_mode, tmp, ipfrag_tuning=ipfrag_tuning)
        frag_peak: dict[str, int] = {}
        with link:
            emulation = check_link(link, delay_ms, loss)
            try:
                env = _env()
                me = [sys.executable, "-m", "vla_pruner_ros.bench.two_host"]
                node_env = {**env, **({"OMP_NUM_THREADS": str(node_threads)} if node_threads else {})}
                node_argv = node_command(ns, model, rate_hz, method, keep_ratio, replan_steps, extra)
                procs["node"] = _Proc(link.exec_argv("B", node_argv), node_env, tmp / "node.err")
                procs["recorder"] = _Proc(link.exec_argv("B", [*me, "monitor", json.dumps(
                    {"ns": ns, "out": str(tmp / "b.json")})]), env, tmp / "recorder.err")
                procs["host_a"] = _Proc(link.exec_argv("A", [*me, "host_a", json.dumps(
                    {"ns": ns, "out": str(tmp / "a.json"), "size": size, "camera_hz": camera_hz,
                     "instruction": instruction})]), env, tmp / "host_a.err")
                try:
                    procs["recorder"].expect("ready", 120.0, "host B's recorder (diagnostics of the node)")
                    procs["host_a"].expect("chunk", 60.0, "host A (the first action chunk across the link)")
                except RuntimeError as err:
                    raise RuntimeError(f"{err}\nthe node's stderr:\n{procs['node'].stderr_tail()}") from None
                time.sleep(1.0)
                schedule = [("clean", seconds, lambda: None), ("impaired", seconds, lambda: link.set(delay_ms, loss)),
                            ("cut", cut_s, link.cut), ("restored", recover_s, link.restore)]
                total = sum(s for _, s, _ in schedule)
                done = 0.0
                for name, length, action in schedule:
                    action()
                    t0 = time.time()
                    while time.time() - t0 < length:
                        time.sleep(min(0.2, max(0.0, length - (time.time() - t0))))
                        for who, p in procs.items():
                            if p.p.poll() is not None:
                                raise RuntimeError(f"{who} exited ({p.p.returncode}) in the {name} phase; its "
                                                   f"stderr:\n{p.stderr_tail()}")
                        frag_peak[name] = max(frag_peak.get(name, 0), frag_memory(procs["node"].p.pid))
                        if progress:
                            progress(done + time.time() - t0, total)
                    phases[name] = (t0, time.time())
                    done += length
                link_counts = link.stats()
                reassembly = reassembly_counts(procs["node"].p.pid)
                for who in ("host_a", "recorder"):
                    procs[who].send("stop")
                for who in ("host_a", "recorder"):
                    procs[who].expect("done", 30.0, who)
                node_rc = procs["node"].stop(signal.SIGINT, timeout=20.0)
                stopped = True
            except BaseException:
                if not stopped and "node" in procs:
                    sys.stderr.write(f"\nthe node's stderr (tail):\n{procs['node'].stderr_tail()}\n")
                raise
            finally:
                for p in procs.values():
                    p.stop(signal.SIGKILL)
        node_err = (tmp / "node.err").read_text(errors="replace")
        a = json.loads((tmp / "a.json").read_text())
        b = json.loads((tmp / "b.json").read_text())
        if raw_dir:
            Path(raw_dir).mkdir(parents=True, exist_ok=True)
            for f in ("a.json", "b.json", "node.err"):
                shutil.copy(tmp / f, Path(raw_dir) / f)
            write_json(Path(raw_dir) / "phases.json", phases)
        report = analyse(a, b, phases, delay_ms=delay_ms, image_timeout_s=image_timeout_s)
        report.update({
            "model": model, "method": method, "keep_ratio": keep_ratio, "camera_hz": camera_hz, "rate_hz": rate_hz,
            "replan_steps": replan_steps, "frame_size": size, "seconds": seconds, "delay_ms": delay_ms, "loss": loss,
            "cut_s": cut_s, "recover_s": recover_s, "image_timeout_s": image_timeout_s,
            "max_translation_step": max_step, "node_threads": node_threads,
            "link": {"mode": link.mode, "emulation": link.describe(), "check": emulation, "frames": link_counts},
            "ip_reassembly_b": {**link.ipfrag, "tuned": ipfrag_tuning, "peak_memory_bytes": frag_peak, **reassembly},
            "node_exit": node_rc, "node_traceback": "Traceback" in node_err, "node_exceptions": exceptions(node_err),
            "node_stderr_tail": node_err[-2000:],
        })
    return report


# ---- analysis (pure) ---------------------------------------------------------------------------------
def exceptions(stderr: str) -> list[str]:
    """The exception line ending each Python traceback in a process's stderr."""
    out, lines = [], stderr.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            out.append(next((x for x in lines[i + 1:] if x and not x[0].isspace()), "(cut short)"))
    return out


def _pct(values, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if len(values) else None


def max_step(targets: list) -> float:
    """Largest translation between consecutive targets (rows ``(..., x, y, z)``)."""
    if len(targets) < 2:
        return 0.0
    p = np.asarray([t[-3:] for t in targets], dtype=float)
    return float(np.linalg.norm(np.diff(p, axis=0), axis=1).max())


def phase_figures(a: dict, b: dict, t0: float, t1: float, one_way_s: float) -> dict:
    """Control rate and missed ticks (node diagnostics), frames sent / received / lost, chunk latency at A."""
    diags = [d for d in b["diags"] if t0 <= d["t"] <= t1]
    out: dict = {"window_s": round(t1 - t0, 2)}
    if len(diags) >= 2:
        da, db = diags[0], diags[-1]
        va, vb = da["values"], db["values"]
        dt = db["t"] - da["t"]

        def delta(k: str) -> int:
            return int(vb[k]) - int(va[k])

        lag = one_way_s + 0.005  # a frame reaches the node's callbacks a few ms after its stamp, plus the delay
        sent = sum(1 for s in a["sent"] if da["t"] - lag <= s < db["t"] - lag)
        received = delta("frames_received")
        out.update({
            "control_rate_hz": round(delta("control_ticks") / dt, 2),
            "control_rate_hz_node": float(vb["control_rate_hz"]),
            "policy_tick_ms_p95": float(vb["tick_ms_p95"]),  # the node's own, over its last 200 plans
            "missed_ticks": delta("missed_ticks"), "control_ticks": delta("control_ticks"),
            "chunks": delta("chunks"), "steps_executed": delta("steps_executed"),
            "frames_sent": sent, "frames_received": received, "frames_dropped_in_node": delta("frames_dropped"),
            "frames_lost_in_transport": sent - received,
        })
        if "frames_missed" in vb and "frames_missed" in va:
            out["frames_missed"] = delta("frames_missed")
        # the camera's count against the node's: the node's own frames_missed only sees a gap once a later frame
        # arrives, so it undercounts while nothing arrives at all
        out["transport_loss_pct"] = round(100.0 * max(sent - received, 0) / max(sent, 1), 1)
    for key, rows in (("at_a", a["chunks"]), ("at_a_best_effort", a["chunks_best_effort"]), ("at_b", b["chunks"])):
        lat = [1000.0 * (arr - st) for arr, st in rows if t0 <= arr <= t1]
        out[f"chunks_{key}"] = len(lat)
        out[f"image_to_chunk_ms_{key}"] = {"min": _pct(lat, 0), "p50": _pct(lat, 50), "p95": _pct(lat, 95),
                                           "max": _pct(lat, 100)}
    return out


def cut_figures(a: dict, b: dict, c0: float, c1: float, end: float, image_timeout_s: float) -> dict:
    """What the node did while the link was cut, and how it came back. Host B's targets are taken in the order
    and at the time they arrived there, next to the node (a repeated hold may carry an old header stamp)."""
    tb = b["targets"]
    stale0 = c0 + image_timeout_s + 0.15  # the newest image crossed before c0: stale by c0 + timeout (+ a tick)
    stale = [t for t in tb if stale0 <= t[0] <= c1]
    hold_dev = max((float(np.linalg.norm(np.subtract(t[-3:], stale[0][-3:]))) for t in stale), default=None)
    steps = [(tb[i][0], float(np.linalg.norm(np.subtract(tb[i][-3:], tb[i - 1][-3:])))) for i in range(1, len(tb))]
    moving = [(t, d) for t, d in steps if d > MOTION_EPS]
    last_move = max((t for t, _ in moving if c0 <= t <= c1), default=None)
    resume_move, resume_step = min(((t, d) for t, d in moving if t > c1), default=(None, None))
    stale_diags = [d for d in b["diags"] if stale0 <= d["t"] <= c1]
    first_wait = min((d["t"] for d in b["diags"] if d["t"] >= c0 and d["message"].startswith("waiting")),
                     default=None)
    executed = [int(d["values"]["steps_executed"]) for d in stale_diags]
    chunk_a = min((arr for arr, st in a["chunks"] if st >= c1), default=None)
    chunk_a_be = min((arr for arr, st in a["chunks_best_effort"] if st >= c1), default=None)
    chunk_b = min((arr for arr, st in b["chunks"] if st >= c1), default=None)
    return {
        "targets_in_stale_window": len(stale), "hold_max_deviation_m": hold_dev,
        "stale_targets_with_old_stamp": sum(1 for t in stale if t[0] - t[1] > 0.2),
        "last_motion_after_cut_s": None if last_move is None else round(last_move - c0, 3),
        "waiting_after_cut_s": None if first_wait is None else round(first_wait - c0, 3),
        "stale_diagnostics": len(stale_diags),
        "stale_messages_waiting": sum(d["message"].startswith("waiting") for d in stale_diags),
        "stale_message": stale_diags[-1]["message"] if stale_diags else None,
        "steps_executed_while_stale": (executed[-1] - executed[0]) if executed else None,
        "chunks_from_images_during_cut": sum(1 for _, st in b["chunks"] if c0 + 1e-3 < st < c1),
        "chunks_resume_at_b_s": None if chunk_b is None else round(chunk_b - c1, 3),
        "chunks_resume_at_a_s": None if chunk_a is None else round(chunk_a - c1, 3),
        "chunks_resume_at_a_best_effort_s": None if chunk_a_be is None else round(chunk_a_be - c1, 3),
        "motion_resume_s": None if resume_move is None else round(resume_move - c1, 3),
        "resume_step_m": None if resume_step is None else round(resume_step, 5),
        "run_end_after_restore_s": round(end - c1, 2),
    }


def analyse(a: dict, b: dict, phases: dict[str, tuple[float, float]], delay_ms: float, image_timeout_s: float,
            settle_s: float = 1.0) -> dict:
    one_way = {"clean": 0.0, "impaired": delay_ms / 1000.0, "restored": delay_ms / 1000.0}
    out: dict = {"phases": {}}
    for name in ("clean", "impaired", "restored"):
        t0, t1 = phases[name]
        out["phases"][name] = phase_figures(a, b, t0 + (settle_s if name != "restored" else 2.0), t1, one_way[name])
    c0, c1 = phases["cut"]
    out["cut"] = cut_figures(a, b, c0, c1, phases["restored"][1], image_timeout_s)
    tb = b["targets"]  # in the order they arrived next to the node
    out["targets"] = {"published_by_node": len(b["targets"]), "received_by_arm": len(a["targets"]),
                      "max_step_published_m": round(max_step(tb), 5),
                      "max_step_published_clean_m": round(max_step(
                          [t for t in tb if phases["clean"][0] <= t[0] <= phases["clean"][1]]), 5),
                      "max_step_received_m": round(max_step(a["targets"]), 5)}
    out["frames_sent"] = len(a["sent"])
    return out


def format_report(r: dict) -> str:
    chk, ip = r["link"]["check"], r["ip_reassembly_b"]

    def probe(d: dict) -> str:
        rtt = (f"RTT p50 {d['rtt_ms']['p50']:.1f} ms (min {d['rtt_ms']['min']:.1f}, max {d['rtt_ms']['max']:.1f})"
               if d["rtt_ms"] else "no reply")
        return f"{d['lost']}/{d['sent']} lost, {rtt}"

    def lat(p: dict, key: str) -> str:
        q = p[f"image_to_chunk_ms_{key}"]
        return f"{q['min']}/{q['p50']}/{q['p95']}/{q['max']} ({p[f'chunks_{key}']})"

    lines = [
        f"two hosts: model={r['model']} method={r['method']} keep={r['keep_ratio']}, camera {r['camera_hz']} Hz "
        f"({r['frame_size']}x{r['frame_size']}) and arm on host A, vla_node on host B, control {r['rate_hz']} Hz, "
        f"replan every {r['replan_steps']} step(s); Fast DDS UDPv4 over veth",
        f"link              {r['link']['emulation']}",
        f"link check (UDP)  clean: {probe(chk['clean'])}; {r['delay_ms']:g} ms + {100 * r['loss']:g}% each way: "
        f"{probe(chk['impaired'])}; cut: {probe(chk['cut'])}",
        f"IP reassembly B   ipfrag_time {ip['ipfrag_time']} s, ipfrag_high_thresh "
        f"{ip['ipfrag_high_thresh'] / 2**20:g} MB "
        f"({'tuned' if ip['tuned'] else 'kernel defaults'}); peak fragment memory "
        + ", ".join(f"{k} {v / 2**20:.1f} MB" for k, v in ip["peak_memory_bytes"].items())
        + f"; {ip['ReasmOKs']} datagrams reassembled, {ip['ReasmFails']} reassembly failures ({ip['ReasmTimeout']} "
        "timeouts)",
    ]
    for name, title in (("clean", "clean link"), ("impaired", f"{r['delay_ms']:g} ms, {100 * r['loss']:g}% loss"),
                        ("restored", "after the cut")):
        p = r["phases"][name]
        missed = f", {p['frames_missed']} seen missing by the node (stamp gaps)" if "frames_missed" in p else ""
        lines += [
            f"{title:<17} control {p.get('control_rate_hz', float('nan')):.2f} Hz ({p.get('missed_ticks')} missed "
            f"tick(s) of {p.get('control_ticks')}); frames {p.get('frames_sent')} sent, {p.get('frames_received')} "
            f"received, {p.get('frames_lost_in_transport')} lost in transport ({p.get('transport_loss_pct')}%)"
            f"{missed}, {p.get('frames_dropped_in_node')} dropped in the node's slot [{p['window_s']:.1f} s]",
            f"{'':<17} image-to-chunk ms min/p50/p95/max (chunks): at B {lat(p, 'at_b')}; at A, reliable reader "
            f"{lat(p, 'at_a')}; best-effort reader {lat(p, 'at_a_best_effort')}",
        ]
    c = r["cut"]
    t = r["targets"]
    lines += [
        f"cut {r['cut_s']:g} s          last new motion {c['last_motion_after_cut_s']} s after the cut (image timeout "
        f"{r['image_timeout_s']} s); diagnostics 'waiting' from {c['waiting_after_cut_s']} s; "
        f"{c['targets_in_stale_window']} targets while stale ({c['stale_targets_with_old_stamp']} with an old stamp), "
        f"{'all holds' if c['hold_max_deviation_m'] == 0 else 'NOT all holds'} (max deviation "
        f"{c['hold_max_deviation_m']} m), "
        f"{c['steps_executed_while_stale']} steps executed; message: {c['stale_message']!r}",
        f"link back         chunks from new images at B after {c['chunks_resume_at_b_s']} s, at A after "
        f"{c['chunks_resume_at_a_s']} s (reliable reader), {c['chunks_resume_at_a_best_effort_s']} s (best effort); "
        f"motion again after {c['motion_resume_s']} s, first step "
        f"{c['resume_step_m']} m",
        f"targets           largest step between consecutive targets {t['max_step_published_m']:.4f} m as published "
        f"({t['published_by_node']}; {t['max_step_published_clean_m']:.4f} m on the clean link), "
        f"{t['max_step_received_m']:.4f} m as the arm received them ({t['received_by_arm']}); "
        f"limit {r['max_translation_step']} m per step",
        f"node              exit {r['node_exit']} on SIGINT, "
        + (f"traceback(s) in its stderr: {'; '.join(r['node_exceptions'])}" if r["node_traceback"] else "no traceback"),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    commands = {"relay": relay_main, "echo": echo_main, "probe": probe_main, "host_a": host_a_main,
                "monitor": monitor_main}
    commands[sys.argv[1]](sys.argv[2:])
