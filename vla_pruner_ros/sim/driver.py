"""A learned policy driving the simulator: the settings the simulator's arm needs, and the per-step
loop through ``ControlCore`` that ``eval`` and DAgger-style recording (``sim record --policy``) share.

Each control step goes through the same ``ControlCore`` the node and replay use, on simulation
time: the newest frame and the end-effector pose in, a chunk planned when due, the step's action out.
"""

from __future__ import annotations

import numpy as np

from ..control import ControlCore, Plan
from ..errors import SettingsError
from ..factory import build_policy, load_settings_model
from ..policy import VLAPolicy
from ..safety import SafetyFilter
from ..settings import SIM_CONTROL, NodeSettings, settings_from_flat
from .env import LIMITS, SensorReadings

T_START = 1.0  # simulation time of an episode's first step (a zero stamp means "unset" to ROS tools)


def sim_settings(model_path: str, params: dict | None = None) -> NodeSettings:
    """Node settings for the simulated arm: its control (SIM_CONTROL) and safety limits, then ``params``."""
    return settings_from_flat({"model.path": model_path, **SIM_CONTROL,
                               "safety.max_translation_step": LIMITS.max_translation_step,
                               "safety.max_rotation_step": LIMITS.max_rotation_step,
                               "safety.workspace_min": list(LIMITS.workspace_min),
                               "safety.workspace_max": list(LIMITS.workspace_max),
                               "safety.image_timeout_s": 1.0, **(params or {})})


class PolicyDriver:
    """``reset(instruction)`` per episode, then ``act(obs)`` once per simulator step."""

    def __init__(self, policy: VLAPolicy, settings: NodeSettings) -> None:
        """``policy`` behind a fresh ControlCore with ``settings``' control and safety limits."""
        self.core = ControlCore(policy, settings.control, SafetyFilter(settings.safety))
        self.dt, self.t = settings.control.dt, T_START
        self.cameras = policy.model.config.num_cameras

    @classmethod
    def load(cls, model_path: str, params: dict | None = None) -> PolicyDriver:
        """The model's unpruned policy (or as ``params`` set it)."""
        settings = sim_settings(model_path, params)
        model, tokenizer = load_settings_model(settings)
        return cls(build_policy(settings, model, tokenizer), settings)

    def reset(self, instruction: str) -> None:
        self.core.reset()
        self.core.set_instruction(instruction)
        self.t = T_START

    def act(self, obs: SensorReadings) -> tuple[np.ndarray, Plan | None]:
        """The 7-D action for this step and the chunk planned at it (None when none was due)."""
        core, t = self.core, self.t
        if len(obs.images) < self.cameras:
            raise SettingsError(f"the policy expects {self.cameras} cameras; the simulator renders {len(obs.images)} "
                             "(TabletopEnv(wrist=True) adds the wrist camera)")
        for cam in range(self.cameras):  # a one-camera policy takes the front camera only
            core.set_image(cam, obs.images[cam], t)
        core.set_pose(obs.ee_position, obs.ee_orientation, t)
        plan = core.run_plan(t)
        cmd = core.command(t)
        if cmd is None:  # nothing planned yet: stay, gripper open
            action = np.array([0, 0, 0, 0, 0, 0, 1.0])
        elif cmd.hold:  # no new step: stay, keep the gripper as it is
            action = np.array([0, 0, 0, 0, 0, 0, cmd.gripper])
        else:
            action = np.asarray(cmd.delta, float)
        self.t += self.dt
        return action, plan
