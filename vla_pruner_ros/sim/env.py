"""A lean MuJoCo tabletop: a mocap-driven parallel-jaw gripper, 3..5 objects and a plate.

The gripper is a free body welded to a mocap target (the action moves the target; the weld drags
the hand with a real velocity, so friction between the two position-controlled slide fingers and an
object can lift it; a bare mocap hand teleports and cannot); objects are free bodies. This keeps a control step
cheap on a 2-core CPU (a few ms of physics plus one 128 x 128 render) while grasping, pushing and
placing stay physical. The base frame is the table's: x forward, y left, z up, table top at z = 0.

Actions are 7-D end-effector deltas ``(dx, dy, dz, droll, dpitch, dyaw, gripper)`` as in
``config/widowx.yaml``: per step at most 0.05 m of translation (norm) and 0.25 rad per axis; the
gripper command is absolute, 1 = open, 0 = closed. Observations: the camera frame, the measured
end-effector pose and the finger opening (the policy's proprio is built by ``ControlCore``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import SettingsError
from ..safety import SafetyConfig, SafetyFilter, matrix_to_quat, quat_to_matrix, rpy_to_matrix
from ..sim_vocabulary import COLORS, DIRECTIONS, FAMILIES, SHAPES
from .tasks import Task

os.environ.setdefault("MUJOCO_GL", "egl")
import mujoco

TABLE = ((0.30, 0.70), (-0.22, 0.22))  # object area (x, y)
HOME = np.array([0.45, 0.0, 0.22])
# The hand starts at a seeded point of this box around HOME: with one fixed start pose, a learned
# policy can read where the target is from how far the hand has already moved toward it (the
# copycat shortcut) instead of finding the named object in the image.
START_SPREAD = np.array([0.08, 0.12, 0.03])
WORKSPACE = ((0.20, -0.32, 0.005), (0.80, 0.32, 0.40))  # gripper box
FINGER_OPEN = 0.045
SIZES = {"cube": (0.02, 0.02, 0.02), "block": (0.035, 0.018, 0.02), "cylinder": (0.02, 0.025)}
# The wrist camera rides on the hand 5 cm behind its centre, under the palm, looking forward and 50
# degrees down between the fingers (image up = forward, image right = the hand's right, -y): the last
# centimetres of a grasp, which the front camera sees at about 6 mm a pixel, fill its frame.
WRIST_CAMERA_POS = "-0.05 0 0.03"
WRIST_CAMERA_AXES = "0 -1 0 0.766 0 0.643"
WRIST_CAMERA_FOVY = 75
LIMITS = SafetyConfig(max_translation_step=0.05, max_rotation_step=0.25, workspace_min=WORKSPACE[0],
                      workspace_max=WORKSPACE[1])


@dataclass
class SensorReadings:
    """What the simulator shows the robot at a step: camera frames, end-effector pose, gripper opening."""

    image: np.ndarray  # (S, S, 3) uint8 RGB, third-person camera
    ee_position: np.ndarray  # (3,)
    ee_orientation: np.ndarray  # (4,) x, y, z, w
    gripper: float  # finger opening (m), 0 = closed
    wrist: np.ndarray | None = None  # (S, S, 3) uint8 RGB of the wrist camera (TabletopEnv(wrist=True))

    @property
    def images(self) -> list[np.ndarray]:
        """The camera frames in the policy's order: front, then wrist if rendered."""
        return [self.image] if self.wrist is None else [self.image, self.wrist]


@dataclass
class SceneObject:
    name: str
    color: str
    shape: str
    position: np.ndarray  # initial (x, y, z)
    yaw: float


def _geom(shape: str, rgba: str) -> str:
    if shape == "cylinder":
        r, h = SIZES[shape]
        return f'type="cylinder" size="{r} {h}" rgba="{rgba}"'
    sx, sy, sz = SIZES[shape]
    return f'type="box" size="{sx} {sy} {sz}" rgba="{rgba}"'


def _half_height(shape: str) -> float:
    return SIZES[shape][-1]


class TabletopEnv:
    """``reset(seed, task)``, ``step(action)``, ``render()``; deterministic given the seed."""

    def __init__(self, image_size: int = 128, control_hz: float = 5.0, substep_s: float = 0.002,
                 start_spread: float = 1.0, wrist: bool = False) -> None:
        """``start_spread`` scales START_SPREAD (0: the hand always starts at HOME; scenes are the same).
        ``wrist``: also render the wrist camera (``SensorReadings.wrist``)."""
        if start_spread < 0:
            raise SettingsError(f"start_spread={start_spread} must be >= 0")
        self.start_spread, self.wrist = start_spread, wrist
        self.image_size = image_size
        self.dt = 1.0 / control_hz
        self.substep_s = substep_s
        self.n_substeps = max(1, int(round(self.dt / substep_s)))
        self.safety = SafetyFilter(LIMITS)
        self.model = self.data = self.renderer = None
        self.task: Task | None = None
        self.objects: list[SceneObject] = []
        self.steps = 0

    # ---- scene ------------------------------------------------------------------------------------
    def _sample_scene(self, rng: np.random.Generator, task: Task) -> tuple[list[SceneObject], np.ndarray]:
        n = int(rng.integers(3, 6))
        others = [(c, s) for c in COLORS for s in SHAPES if (c, s) != (task.color, task.shape) and c != task.color]
        picks = rng.choice(len(others), size=n - 1, replace=False)
        specs = [(task.color, task.shape)] + [others[i] for i in picks]
        for attempt in range(1000):
            if attempt and attempt % 100 == 0 and len(specs) > 3:
                specs = specs[:-1]  # a crowded draw: one distractor fewer
            placed: list[np.ndarray] = []
            ok = True
            for _spec in specs:
                p = np.array([rng.uniform(*TABLE[0]), rng.uniform(*TABLE[1])])
                if any(np.linalg.norm(p - q) < 0.09 for q in placed):
                    ok = False
                    break
                placed.append(p)
            plate = np.array([rng.uniform(*TABLE[0]), rng.uniform(*TABLE[1])])
            ok = ok and all(np.linalg.norm(plate - q) > 0.12 for q in placed)
            if ok and task.family == "push":  # keep the push corridor free and on the table
                d = np.array(DIRECTIONS[task.direction])
                end = placed[0] + 0.16 * d
                ok = TABLE[0][0] - 0.05 <= end[0] <= TABLE[0][1] + 0.05 and TABLE[1][0] - 0.05 <= end[1] <= \
                    TABLE[1][1] + 0.05
                for q in placed[1:] + [plate]:
                    rel = q - placed[0]
                    along, across = rel @ d, abs(rel @ np.array([-d[1], d[0]]))
                    ok = ok and not (-0.12 < along < 0.24 and across < 0.09)
            if ok:
                break
        else:
            raise RuntimeError(f"no valid scene for {task.instruction!r} after 1000 draws")
        objs = [SceneObject(f"obj{i}", c, s, np.array([*p, _half_height(s)]), float(rng.uniform(-0.3, 0.3)))
                for i, ((c, s), p) in enumerate(zip(specs, placed, strict=True))]
        return objs, plate

    def _xml(self, rng: np.random.Generator, objs: list[SceneObject], plate: np.ndarray) -> str:
        light = rng.uniform(0.55, 0.85)
        cam = np.array([1.00, 0.0, 0.55]) + rng.uniform(-0.02, 0.02, 3)
        target = np.array([0.50, 0.0, 0.0])
        fwd = target - cam
        fwd /= np.linalg.norm(fwd)
        right = np.cross(fwd, [0, 0, 1.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, fwd)
        bodies = []
        for o in objs:
            rgba = " ".join(f"{v:.3f}" for v in COLORS[o.color]) + " 1"
            x, y, z = o.position
            bodies.append(f'<body name="{o.name}" pos="{x:.4f} {y:.4f} {z + 0.001:.4f}" euler="0 0 {o.yaw:.4f}">'
                          f'<freejoint/><geom name="{o.name}" {_geom(o.shape, rgba)} mass="0.05"/></body>')
        spread = self.start_spread * START_SPREAD
        hx, hy, hz = HOME + rng.uniform(-spread, spread)  # drawn last: the scene does not depend on it
        return f"""
<mujoco model="tabletop">
  <option timestep="{self.substep_s}" cone="elliptic" impratio="10"/>
  <visual><global offwidth="{self.image_size}" offheight="{self.image_size}"/><quality shadowsize="0"/></visual>
  <default><geom friction="1.2 0.01 0.001" condim="4" solref="0.01 1"/></default>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1=".78 .74 .68" rgb2=".72 .68 .62" width="64" height="64"/>
    <material name="table" texture="grid" texrepeat="5 5"/>
  </asset>
  <worldbody>
    <light pos="0.5 -0.3 1.6" dir="0 0.2 -1" diffuse="{light:.3f} {light:.3f} {light:.3f}"/>
    <light pos="0.9 0.4 1.2" dir="-0.3 -0.3 -1" diffuse=".3 .3 .3"/>
    <geom name="table" type="box" pos="0.5 0 -0.02" size="0.45 0.40 0.02" material="table"/>
    <geom name="plate" type="cylinder" pos="{plate[0]:.4f} {plate[1]:.4f} 0.004" size="0.06 0.004"
          rgba=".96 .96 .96 1"/>
    <body name="target" mocap="true" pos="{hx} {hy} {hz}"/>
    <body name="hand" pos="{hx} {hy} {hz}" gravcomp="1">
      <freejoint name="hand"/>
      <inertial pos="0 0 0.02" mass="0.4" diaginertia="0.002 0.002 0.002"/>
      <geom name="palm" type="box" size="0.015 0.06 0.012" pos="0 0 0.05" rgba=".25 .25 .28 1"/>
      <body name="finger_l" gravcomp="1">
        <joint name="finger_l" type="slide" axis="0 1 0" range="0 {FINGER_OPEN}" damping="5"/>
        <geom type="box" size="0.010 0.006 0.035" pos="0 0.006 0.012" rgba=".35 .35 .38 1" mass="0.02"/></body>
      <body name="finger_r" gravcomp="1">
        <joint name="finger_r" type="slide" axis="0 -1 0" range="0 {FINGER_OPEN}" damping="5"/>
        <geom type="box" size="0.010 0.006 0.035" pos="0 -0.006 0.012" rgba=".35 .35 .38 1" mass="0.02"/></body>
      <camera name="wrist" pos="{WRIST_CAMERA_POS}" xyaxes="{WRIST_CAMERA_AXES}" fovy="{WRIST_CAMERA_FOVY}"/>
    </body>
    {"".join(bodies)}
    <camera name="front" pos="{cam[0]:.4f} {cam[1]:.4f} {cam[2]:.4f}" fovy="48"
            xyaxes="{right[0]:.4f} {right[1]:.4f} {right[2]:.4f} {up[0]:.4f} {up[1]:.4f} {up[2]:.4f}"/>
  </worldbody>
  <equality><weld body1="target" body2="hand" solref="0.004 1"/></equality>
  <actuator>
    <position name="finger_l" joint="finger_l" kp="400" ctrlrange="0 {FINGER_OPEN}"/>
    <position name="finger_r" joint="finger_r" kp="400" ctrlrange="0 {FINGER_OPEN}"/>
  </actuator>
</mujoco>"""

    # ---- API --------------------------------------------------------------------------------------
    def reset(self, seed: int, task: Task) -> SensorReadings:
        if task.family not in FAMILIES:
            raise SettingsError(f"task family {task.family!r} is unknown; expected one of {list(FAMILIES)}")
        rng = np.random.default_rng(seed)
        self.task = task
        self.objects, self.plate = self._sample_scene(rng, task)
        if self.renderer is not None:
            self.renderer.close()
        self.model = mujoco.MjModel.from_xml_string(self._xml(rng, self.objects, self.plate))
        self.data = mujoco.MjData(self.model)
        self.renderer = mujoco.Renderer(self.model, self.image_size, self.image_size)
        self.data.ctrl[:] = FINGER_OPEN
        self.data.qpos[self.model.joint("finger_l").qposadr[0]] = FINGER_OPEN
        self.data.qpos[self.model.joint("finger_r").qposadr[0]] = FINGER_OPEN
        mujoco.mj_forward(self.model, self.data)
        for _ in range(50):  # let objects settle
            mujoco.mj_step(self.model, self.data)
        self.start = {o.name: self.object_position(o.name).copy() for o in self.objects}
        self.steps = 0
        self.gripper_cmd = 1.0
        return self.observe()

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
            self.renderer = None

    def render(self, camera: str = "front") -> np.ndarray:
        self.renderer.update_scene(self.data, camera=camera)
        return self.renderer.render().copy()

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The hand's measured pose: position and (x, y, z, w) quaternion."""
        hand = self.data.body("hand")
        w = hand.xquat
        return hand.xpos.copy(), np.array([w[1], w[2], w[3], w[0]])

    def target_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The commanded (mocap) pose the hand is welded to."""
        w = self.data.mocap_quat[0]
        return self.data.mocap_pos[0].copy(), np.array([w[1], w[2], w[3], w[0]])

    def gripper_opening(self) -> float:
        return float(self.data.qpos[self.model.joint("finger_l").qposadr[0]]
                     + self.data.qpos[self.model.joint("finger_r").qposadr[0]])

    def object_position(self, name: str) -> np.ndarray:
        return self.data.body(name).xpos.copy()

    @property
    def target(self) -> SceneObject:
        return self.objects[0]

    def observe(self) -> SensorReadings:
        pos, quat = self.ee_pose()
        return SensorReadings(self.render(), pos, quat, self.gripper_opening(),
                           self.render("wrist") if self.wrist else None)

    def step(self, action: np.ndarray) -> tuple[SensorReadings, bool, bool]:
        """Apply one 7-D delta action; returns (observation, success, done)."""
        a = self.safety.clamp_deltas(np.asarray(action, float).reshape(1, -1))[0]
        pos, quat = self.target_pose()
        new_pos = self.safety.clamp_position(pos + a[:3])
        rot = rpy_to_matrix(*a[3:6]) @ quat_to_matrix(quat)
        q = matrix_to_quat(rot)
        self.data.mocap_quat[0] = [q[3], q[0], q[1], q[2]]
        self.gripper_cmd = float(a[6])
        self.data.ctrl[:] = FINGER_OPEN * self.gripper_cmd
        for k in range(self.n_substeps):  # move the mocap smoothly over the control period
            self.data.mocap_pos[0] = pos + (new_pos - pos) * (k + 1) / self.n_substeps
            mujoco.mj_step(self.model, self.data)
        self.steps += 1
        success = self.success()
        return self.observe(), success, success or self.steps >= self.task.step_limit

    # ---- success predicates ---------------------------------------------------------------------
    def held(self, name: str) -> bool:
        """The object is between the fingers, which are closed on it."""
        p = self.object_position(name)
        hand, _ = self.ee_pose()
        return (self.gripper_cmd < 0.5 and np.linalg.norm(p[:2] - hand[:2]) < 0.04
                and abs(p[2] - hand[2]) < 0.05 and self.gripper_opening() > 0.01)

    def success(self) -> bool:
        t, name = self.task, self.target.name
        p, p0 = self.object_position(name), self.start[name]
        if t.family == "pick":
            return p[2] - p0[2] > 0.06 and self.held(name)
        if t.family == "push":
            d = np.array(DIRECTIONS[t.direction])
            disp = p[:2] - p0[:2]
            return bool(disp @ d > 0.08 and abs(disp @ np.array([-d[1], d[0]])) < 0.06 and p[2] > 0)
        on_plate = np.linalg.norm(p[:2] - self.plate) < 0.05 and 0.0 < p[2] - _half_height(self.target.shape) < 0.02
        return bool(on_plate and self.gripper_cmd > 0.5 and not self.held(name))

    def state(self) -> dict:
        return {"objects": {o.name: self.object_position(o.name).tolist() for o in self.objects},
                "ee": self.ee_pose()[0].tolist(), "gripper": self.gripper_opening(), "step": self.steps}

