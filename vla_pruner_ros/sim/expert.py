"""Scripted experts: a waypoint state machine per task family, from privileged simulator state.

Each call returns the 7-D delta action toward the current waypoint (at most 0.05 m a step). Phases
advance when the gripper is within ``tol`` of the waypoint (or after a fixed number of steps for
closing/opening); the grasp approach and the transport also follow the hand's state (a hand low and
nearly over the object descends while centring, one that drifted off goes back up; a held object
over the plate is lowered while centring, elsewhere lifted to the carry height first), so a state
gets one label however the hand got there. Recovery: if the object is lost while carrying it, the expert goes back
to re-grasping. Optional Gaussian action noise (``noise`` m) makes demonstrations less uniform.

``perturb`` (m) is DART-style execution noise: now and then (``PERTURB_RATE`` of the steps) the
simulator executes the expert's action plus a push of that size in a random direction for 1..3
steps, while the clean expert action is what ``on_step`` sees (and what the recorder stores). The
demonstrations then visit the states a learned policy drifts into (a hand a few centimetres off
the path) and label them with the expert's correction back; without them, behaviour cloning has no
examples of recovering from its own errors, and they compound.
"""

from __future__ import annotations

import numpy as np

from ..errors import SettingsError
from ..sim_vocabulary import DIRECTIONS
from .env import TabletopEnv, _half_height

MAX_STEP = 0.05
APPROACH_HEIGHT = 0.08  # above the grasp height, where the hand lines up over the object
CENTRE_TOL = 0.025  # m off the object (x-y) within which a low hand descends while centring
CARRY_HEIGHT = 0.14  # hand height at which a grasped object is carried
PLATE_TOL = 0.02  # m off the plate centre (x-y) within which a held object is lowered onto it


class Expert:
    def __init__(self, env: TabletopEnv, noise: float = 0.0, seed: int = 0, tol: float = 0.008) -> None:
        self.env, self.noise, self.tol = env, noise, tol
        self.rng = np.random.default_rng(seed)
        self.phase = "above"
        self.wait = 0

    def reset(self) -> None:
        self.phase, self.wait = "above", 0

    def _grasp_z(self) -> float:
        o = self.env.target
        return max(0.026, _half_height(o.shape) + 0.006)

    def _toward(self, target: np.ndarray, grip: float) -> tuple[np.ndarray, bool]:
        pos, _ = self.env.ee_pose()
        d = target - pos
        reached = np.linalg.norm(d) < self.tol
        n = np.linalg.norm(d)
        if n > MAX_STEP:
            d *= MAX_STEP / n
        if self.noise:
            d = d + self.rng.normal(0, self.noise, 3)
        return np.array([*d, 0.0, 0.0, 0.0, grip]), reached

    def act(self) -> np.ndarray:
        env, task = self.env, self.env.task
        obj = env.object_position(env.target.name)
        if task.family == "push":
            return self._push(obj)
        return self._pick_place(obj, place=task.family == "place")

    def _leg(self, target: np.ndarray, grip: float, next_phase: str | None) -> np.ndarray:
        """Move toward a waypoint; on arrival go on to ``next_phase`` (None: stay in this phase)."""
        a, done = self._toward(target, grip)
        if done and next_phase:
            self.phase = next_phase
        return a

    def _wait(self, steps: int, grip: float, next_phase: str) -> np.ndarray:
        """Stay still with a gripper command for ``steps`` steps, then go on to ``next_phase``."""
        self.wait += 1
        if self.wait >= steps:
            self.phase, self.wait = next_phase, 0
        return np.array([0, 0, 0, 0, 0, 0, grip])

    def _pick_place(self, obj: np.ndarray, place: bool) -> np.ndarray:
        env = self.env
        gz = self._grasp_z()
        held = env.held(env.target.name)
        if self.phase in ("lift", "carry", "lower") and not held:
            self.phase = "above"  # dropped it: grasp again
        elif self.phase in ("above", "down") and held:
            self.phase = "close"  # someone else (a driving policy) closed the fingers on it
        # Phases follow the hand's state, not only the waypoints reached, so that the same state
        # gets the same label whoever put the hand there (DAgger, pushes). Approach: a hand below
        # the approach height and nearly over the object descends while centring on it; one that
        # drifted away from it goes back up first. Transport: a held object over the plate is
        # lowered while centring; elsewhere it is lifted straight up to the carry height, and
        # carried from there.
        hand, _ = env.ee_pose()
        plate = env.plate
        off = np.linalg.norm(hand[:2] - obj[:2])
        if self.phase == "above" and off < CENTRE_TOL and hand[2] < gz + APPROACH_HEIGHT:
            self.phase = "down"
        elif self.phase == "down" and off > 2 * CENTRE_TOL:
            self.phase = "above"
        elif self.phase in ("lift", "carry", "lower") and place:
            off_plate = np.linalg.norm(hand[:2] - plate)
            if off_plate < PLATE_TOL or (self.phase == "lower" and off_plate < 2 * PLATE_TOL):
                self.phase = "lower"
            else:
                self.phase = "carry" if hand[2] > CARRY_HEIGHT - 0.03 else "lift"
        if self.phase == "above":
            return self._leg(np.array([obj[0], obj[1], gz + APPROACH_HEIGHT]), 1.0, "down")
        if self.phase == "down":
            return self._leg(np.array([obj[0], obj[1], gz]), 1.0, "close")
        if self.phase == "close":
            return self._wait(3, 0.0, "lift")
        if self.phase == "lift":
            return self._leg(np.array([obj[0], obj[1], CARRY_HEIGHT]), 0.0, "carry" if place else None)
        if self.phase == "carry":
            return self._leg(np.array([plate[0], plate[1], CARRY_HEIGHT]), 0.0, "lower")
        if self.phase == "lower":
            return self._leg(np.array([plate[0], plate[1], gz + 0.012]), 0.0, "release")
        if self.phase == "release":
            return self._wait(2, 1.0, "retreat")
        return self._leg(np.array([plate[0], plate[1], 0.16]), 1.0, None)  # retreat

    def _push(self, obj: np.ndarray) -> np.ndarray:
        d = np.array([*DIRECTIONS[self.env.task.direction], 0.0])
        start = self.env.start[self.env.target.name]
        behind = start - 0.075 * d
        z = 0.03
        if self.phase == "above":
            return self._leg(np.array([behind[0], behind[1], 0.09]), 0.0, "down")
        if self.phase == "down":
            return self._leg(np.array([behind[0], behind[1], z]), 0.0, "push")
        target = start + 0.13 * d
        return self._leg(np.array([target[0], target[1], z]), 0.0, None)


PERTURB_RATE = 0.15  # chance per unperturbed step that a push starts


def run_episode(env: TabletopEnv, task, seed: int, noise: float = 0.0, on_step=None,
                perturb: float = 0.0, driver=None) -> tuple[bool, int]:
    """Roll out the expert; ``on_step(obs, action, success)`` sees every step and the expert's own
    action. ``perturb``: size (m per step) of the occasional pushes added to the executed translation
    (see the module text). ``driver(obs, expert_action)``, if given, returns the action to execute
    instead of the expert's (DAgger: a learned policy drives, the expert labels; it is called before
    ``on_step``). Returns (success, steps)."""
    if perturb < 0:
        raise SettingsError(f"perturb={perturb} must be >= 0 (metres)")
    obs = env.reset(seed, task)
    expert = Expert(env, noise, seed)
    rng = np.random.default_rng([seed, 1])  # its own stream: perturb=0 leaves the expert's draws alone
    push, left = np.zeros(3), 0
    success, done = False, False
    while not done:
        action = expert.act()
        executed = action if driver is None else np.asarray(driver(obs, action), float)
        if on_step is not None:
            on_step(obs, action, success)
        if perturb and not left and rng.random() < PERTURB_RATE:
            direction = rng.normal(size=3) * (1.0, 1.0, 0.5)  # mostly sideways: what misses an object
            push, left = perturb * direction / np.linalg.norm(direction), int(rng.integers(1, 4))
        if left:
            executed = executed.copy()
            executed[:3] += push
            left -= 1
        obs, success, done = env.step(executed)
    if on_step is not None:
        on_step(obs, None, success)
    return success, env.steps
