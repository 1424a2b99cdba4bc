"""Fast DDS transport settings for large images (see ``fastdds_large_images.xml`` and docs/node.md).

    export FASTDDS_DEFAULT_PROFILES_FILE=$(python -m interactvlm_ros.ros.dds)   # in every process of the pipeline

An XML profile rather than code: the transports are chosen by each process's middleware when it starts, so
the camera driver (which writes the images) needs the same setting as the node; only an environment variable
reaches processes we do not start.
"""
from __future__ import annotations

import os
from pathlib import Path

PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
LARGE_IMAGE_PROFILE = Path(__file__).with_name("fastdds_large_images.xml")


def _rmw(env) -> str:
    return env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")  # ROS 2's default middleware


def profile_missing(env) -> bool:
    """The middleware is Fast DDS and no profile file is set (best-effort large images will be fragmented)."""
    return _rmw(env).startswith("rmw_fastrtps") and not env.get(PROFILE_ENV)


def with_large_image_profile(env: dict[str, str]) -> tuple[dict[str, str], str]:
    """``env`` with the large-image profile when the middleware is Fast DDS and no profile file is set;
    -> (environment, a line saying what was decided, for the log)."""
    rmw = _rmw(env)
    if not rmw.startswith("rmw_fastrtps"):
        return dict(env), f"Fast DDS large-image profile not used: RMW_IMPLEMENTATION={rmw}"
    if env.get(PROFILE_ENV):
        return dict(env), f"Fast DDS profile from {PROFILE_ENV}={env[PROFILE_ENV]} (kept)"
    return dict(env, **{PROFILE_ENV: str(LARGE_IMAGE_PROFILE)}), f"Fast DDS profile: {LARGE_IMAGE_PROFILE}"


if __name__ == "__main__":  # pragma: no cover
    print(LARGE_IMAGE_PROFILE)
