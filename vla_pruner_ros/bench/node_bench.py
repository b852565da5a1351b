"""``vla-pruner bench-node``: the live node in one process, a camera in another, for N seconds.

Reports the achieved control rate and missed control ticks (from the node's diagnostics),
image-to-chunk latency p50/p95/max (chunk arrival here minus the source image stamp), frames
dropped in the node's one-frame slot and in transport (sent by the camera but never received), and
the node's resident memory (RSS) after warm-up and at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def camera_main(argv: list[str]) -> None:
    """A camera process: rgb8 frames on ``<namespace>/image`` at a rate; prints how many it sent."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    namespace, hz, seconds, size = argv[0], float(argv[1]), float(argv[2]), int(argv[3])
    rclpy.init()
    node = rclpy.create_node("camera", namespace=namespace)
    pub = node.create_publisher(Image, "image", qos_profile_sensor_data)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    time.sleep(1.0)  # discovery
    sent, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        frame = np.roll(base, sent % size, axis=1)
        msg = Image(height=size, width=size, encoding="rgb8", step=size * 3, data=frame.tobytes())
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
        sent += 1
        time.sleep(max(0.0, start + sent / hz - time.monotonic()))
    print(sent, flush=True)
    node.destroy_node()
    rclpy.shutdown()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def node_command(ns: str, model: str, rate_hz: float, method: str, keep_ratio: float, replan_steps: int,
                 extra: dict[str, str] | None = None) -> list[str]:
    """The ``vla_node`` command line of a benchmark: namespace, model, rate, pruning, ``-p`` extras."""
    params = {"model.path": model, "control.rate_hz": float(rate_hz), "control.replan_steps": replan_steps,
              "pruning.method": method, "pruning.keep_ratio": float(keep_ratio),
              **({"pruning.layer": 2} if model == "tiny" else {}), **(extra or {})}
    return [sys.executable, "-m", "vla_pruner_ros.ros.node", "--ros-args", "-r", f"__ns:={ns}",
            *[a for k, v in params.items() for a in ("-p", f"{k}:={v}")], "--log-level", "warn"]


def run_node_bench(model: str = "tiny", seconds: float = 60.0, camera_hz: float = 30.0, rate_hz: float = 10.0,
                   method: str = "vla_pruner", keep_ratio: float = 0.25, replan_steps: int = 1, size: int = 96,
                   progress=None, domain_id: int | None = None) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory

    env, saved = _join_domain(domain_id)
    ns = f"/bench{os.getpid()}"
    node = subprocess.Popen(node_command(ns, model, rate_hz, method, keep_ratio, replan_steps),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()  # its own context: callers may have rclpy initialised already
    rclpy.init(context=context)
    me = rclpy.create_node("bench", namespace=ns, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(me)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    me.create_publisher(String, "instruction", latched).publish(String(data="pick up the red cube"))
    latencies: list[float] = []
    diags: list[dict[str, str]] = []

    def on_chunk(msg: JointTrajectory) -> None:
        stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        latencies.append(1000.0 * (me.get_clock().now().nanoseconds * 1e-9 - stamp))

    def on_diag(msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.name.startswith(f"{ns}/vla_node"):
                diags.append({kv.key: kv.value for kv in st.values})

    me.create_subscription(JointTrajectory, f"{ns}/vla_node/action_chunk", on_chunk, 50)
    me.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
    camera = None
    try:
        end = time.monotonic() + 120.0
        while not diags and time.monotonic() < end and node.poll() is None:  # model load: the node is up
            executor.spin_once(timeout_sec=0.1)  # when its diagnostics arrive
        if diags:
            camera = subprocess.Popen([sys.executable, "-m", "vla_pruner_ros.bench.node_bench", "camera", ns,
                                       str(camera_hz), str(seconds + 2.0), str(size)], env=env,
                                      stdout=subprocess.PIPE, text=True)
            end = time.monotonic() + 30.0
            while not latencies and time.monotonic() < end and node.poll() is None:  # first chunk
                executor.spin_once(timeout_sec=0.1)
        if not latencies:
            alive = node.poll() is None
            if alive:
                node.terminate()
            _, err = node.communicate(timeout=30)
            last = diags[-1] if diags else {}
            raise RuntimeError(f"the node produced no chunk (node {'was running' if alive else 'exited'}, "
                               f"{len(diags)} diagnostics, frames received {last.get('frames_received')}, "
                               f"instruction {last.get('instruction')!r}); its stderr:\n{err[-2000:]}")
        rss_start = _rss_mb(node.pid)
        n_warm = len(latencies)
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            executor.spin_once(timeout_sec=0.1)
            if progress:
                progress(time.monotonic() - start, seconds)
        rss_end = _rss_mb(node.pid)
        sent = int(camera.communicate(timeout=60)[0].strip().splitlines()[-1])
        while len(diags) < 2:
            executor.spin_once(timeout_sec=0.2)
        d1 = diags[-1]
    finally:
        if node.poll() is None:
            node.terminate()
            node.wait(timeout=30)
        if camera is not None and camera.poll() is None:
            camera.kill()
        executor.shutdown()
        me.destroy_node()
        rclpy.shutdown(context=context)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    settings = {"model": model, "method": method, "keep_ratio": keep_ratio, "seconds": seconds, "camera_hz": camera_hz,
                "rate_hz": rate_hz, "replan_steps": replan_steps, "frame_size": size}
    return _report(settings, d1, np.asarray(latencies[n_warm:]), sent, rss_start, rss_end)


def _join_domain(domain_id: int | None) -> tuple[dict[str, str], dict[str, str | None]]:
    """The node's environment (its own ROS domain, loopback discovery) and this process's previous values
    of those variables; this process joins the same domain until they are restored."""
    env = dict(os.environ)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    saved = {k: os.environ.get(k) for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")}
    os.environ.update({k: env[k] for k in saved})
    return env, saved


def _report(settings: dict, d1: dict[str, str], lat: np.ndarray, sent: int, rss_start: float,
            rss_end: float) -> dict:
    """The run's figures from the node's last diagnostics, the measured image-to-chunk latencies (after the
    first chunk), the frames the camera sent and the node's memory."""
    return {
        **settings,
        "control_rate_hz": float(d1["control_rate_hz"]), "missed_ticks": int(d1["missed_ticks"]),
        "control_ticks": int(d1["control_ticks"]), "chunks": int(d1["chunks"]),
        "image_to_chunk_ms": {"p50": round(float(np.percentile(lat, 50)), 1),
                              "p95": round(float(np.percentile(lat, 95)), 1), "max": round(float(lat.max()), 1)},
        "tick_ms_p50": float(d1["tick_ms_p50"]), "frames_sent": sent, "frames_received": int(d1["frames_received"]),
        "frames_dropped_in_node": int(d1["frames_dropped"]),
        "frames_lost_in_transport": sent - int(d1["frames_received"]),
        "rss_mb_start": round(rss_start, 1), "rss_mb_end": round(rss_end, 1),
        "rss_growth_mb": round(rss_end - rss_start, 1),
    }


def format_report(r: dict) -> str:
    lat = r["image_to_chunk_ms"]
    return "\n".join([
        f"node bench: model={r['model']} method={r['method']} keep={r['keep_ratio']} {r['seconds']:.0f} s, camera "
        f"{r['camera_hz']} Hz ({r['frame_size']}x{r['frame_size']}), control {r['rate_hz']} Hz, replan every "
        f"{r['replan_steps']} step(s)",
        f"control rate      {r['control_rate_hz']:.2f} Hz achieved (last 100 ticks), {r['missed_ticks']} missed "
        f"tick(s) of {r['control_ticks']}",
        f"image-to-chunk    p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, max {lat['max']:.1f} ms "
        f"({r['chunks']} chunks; policy tick p50 {r['tick_ms_p50']:.1f} ms)",
        f"frames            {r['frames_sent']} sent, {r['frames_received']} received, "
        f"{r['frames_dropped_in_node']} dropped in the node's one-frame slot, {r['frames_lost_in_transport']} lost "
        "in transport (best effort, depth 1)",
        f"memory (RSS)      {r['rss_mb_start']:.1f} MB after warm-up, {r['rss_mb_end']:.1f} MB at the end "
        f"({r['rss_growth_mb']:+.1f} MB)",
    ])


def write_json(path: str | Path, report: dict) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "camera":
        camera_main(sys.argv[2:])
