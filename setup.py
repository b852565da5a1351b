"""vla_pruner_ros: an ament_python package that also installs with plain pip."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "vla_pruner_ros"

ROS_WHEELS = [  # ROS 2 Jazzy from PyPI, for machines without a system ROS
    "ros-jazzy-rclpy",
    "ros-jazzy-lifecycle-msgs",  # vla_node is a managed (lifecycle) node
    "ros-jazzy-rcl-lifecycle",
    "ros-jazzy-rmw-fastrtps-cpp",  # rclpy does not import without an RMW implementation
    "ros-jazzy-std-msgs",
    "ros-jazzy-std-srvs",
    "ros-jazzy-sensor-msgs",
    "ros-jazzy-geometry-msgs",
    "ros-jazzy-trajectory-msgs",
    "ros-jazzy-diagnostic-msgs",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    description="ROS 2 VLA inference node with visual token pruning",
    license="MIT",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    # The embedded model (trained on the simulator) and a recorded sample episode.
    package_data={PACKAGE: ["weights/*/*", "data/*/*"]},
    python_requires=">=3.10",
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"lib/{PACKAGE}", ["scripts/ros/vla_node", "scripts/ros/sim_node"]),  # `ros2 run` for pip installs
    ],
    install_requires=[
        "numpy>=1.26",
        "torch>=2.4",  # on CPU machines install torch==2.13.0 first (see README)
        "transformers>=5.20,<6",
        "tokenizers>=0.21",
        "safetensors>=0.4",
        "opencv-python-headless>=4.9",
        "pyyaml>=6",
        "rosbags>=0.11",
        "matplotlib>=3.7",
        "pillow>=10",  # OpenVLA's resize (PIL bicubic)
    ],
    extras_require={
        "ros": ROS_WHEELS,
        "sim": ["mujoco>=3.2"],
        "dev": ["pytest>=8", "ruff>=0.6"],
    },
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "vla-pruner = vla_pruner_ros.cli:main",
            "vla_node = vla_pruner_ros.ros.node:main",
            "sim_node = vla_pruner_ros.ros.sim_node:main",
        ],
    },
)
