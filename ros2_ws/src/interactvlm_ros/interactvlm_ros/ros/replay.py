"""``interactvlm-replay``: publish a video, an image folder or one image as a camera.

    interactvlm-replay SOURCE [--rate HZ] [--loop] [--frame-id F] [--max-frames N] [--encoding rgb8|bgr8]
                       [--hfov DEG] [--qos sensor_data|reliable] [--transport raw|compressed]
                       [--jpeg-quality Q] [--ros-args ...]

Publishes ``image`` (sensor_msgs/Image) and ``camera_info`` (CameraInfo) with the same header (stamp =
publish time, frame_id = --frame-id), remappable as usual. ``--transport compressed`` publishes
sensor_msgs/CompressedImage on ``<image>/compressed`` instead, as image_transport's compressed plugin does
(jpeg, format "<encoding>; jpeg compressed bgr8"): a camera over a thin link, for the node's
``image_transport:=compressed``. OpenCV reads videos (anything
cv2.VideoCapture opens) and images (png, jpg, jpeg, bmp, tif, tiff, webp; a folder is played in natural
name order — numbers by value, ``9.png`` before ``10.png``, as ffmpeg's unpadded ``%d.png`` writes them; a single
image is repeated). Default intrinsics (no calibration known): the package's default,
the one the node and ``interactvlm reconstruct`` use without CameraInfo (``recon.camera.default_intrinsics``:
pinhole, fx = fy = 1.2·max(W, H), ≈ 45° horizontal field of view on 4:3, principal point at the image centre,
zero distortion); ``--hfov DEG`` publishes that horizontal field of view instead (0 < DEG < 180). An image of a
folder that OpenCV cannot read is passed over with a warning naming it.
"""
from __future__ import annotations

import argparse
import re
import signal
import sys
import time
from pathlib import Path

import numpy as np

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def natural_key(path: Path) -> tuple:
    """Sort key of a frame file: its name with runs of digits compared by value (``frame_9.png`` before
    ``frame_10.png``; a plain sort played ``1, 10, 11, 2, ...``), then the name itself (``01`` vs ``1``)."""
    chunks = re.split(r"(\d+)", path.name)  # text, number, text, ...: the same kind at the same position
    return tuple(int(c) if i % 2 else c for i, c in enumerate(chunks)), path.name


class FrameSource:
    """Iterates BGR uint8 frames of a video, an image folder or an image. ``loop`` restarts at the end.

    An image of a folder that OpenCV cannot read (a truncated or mis-named file) is passed over with
    ``on_skip(message)`` (the replay logs it once per file); a folder with no readable image, or a single image that
    cannot be read, raises ValueError."""

    def __init__(self, source: str | Path, loop: bool = False, on_skip=None):
        import cv2

        self.path = Path(source)
        self.loop = loop
        self.on_skip = on_skip
        self.skipped: set[Path] = set()
        self._cap = None
        self._files: list[Path] = []
        self._i = 0
        if not self.path.exists():
            raise FileNotFoundError(f"replay source '{self.path}' does not exist")
        if self.path.is_dir():
            self._files = sorted((p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_EXTS), key=natural_key)
            if not self._files:
                raise ValueError(f"folder '{self.path}' has no images ({', '.join(sorted(IMAGE_EXTS))})")
            self.kind = "folder"
        elif self.path.suffix.lower() in IMAGE_EXTS:
            self._files = [self.path]
            self.kind = "image"
            self.loop = True  # one image: repeat until --max-frames / Ctrl-C
        else:
            self._cap = cv2.VideoCapture(str(self.path))
            if not self._cap.isOpened():
                raise ValueError(f"OpenCV cannot open '{self.path}' as a video")
            self.kind = "video"

    def next(self) -> np.ndarray | None:
        import cv2

        if self._cap is not None:
            ok, frame = self._cap.read()
            if not ok and self.loop:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = self._cap.read()
            return frame if ok else None
        for _ in range(2 * len(self._files)):  # at most one pass over every file, wherever it starts
            if self._i >= len(self._files):
                if not self.loop:
                    return None
                self._i = 0
            f = self._files[self._i]
            self._i += 1
            img = cv2.imread(str(f), cv2.IMREAD_COLOR) if f not in self.skipped else None
            if img is not None:
                return img
            if f not in self.skipped:
                self.skipped.add(f)
                if self.on_skip is not None and len(self.skipped) < len(self._files):
                    self.on_skip(f"OpenCV cannot read image '{f}'; passed over")
            if len(self.skipped) == len(self._files):
                raise ValueError(f"OpenCV cannot read any image of '{self.path}'" if self.kind == "folder"
                                 else f"OpenCV cannot read image '{f}'")
        return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="interactvlm-replay", description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="video file, folder of images, or one image")
    p.add_argument("--rate", type=float, default=10.0, help="frames per second (default 10)")
    p.add_argument("--loop", action="store_true", help="restart at the end (an image always repeats)")
    p.add_argument("--frame-id", default="camera_optical_frame", help="header.frame_id (default camera_optical_frame)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0 = no limit)")
    p.add_argument("--encoding", choices=("rgb8", "bgr8"), default="rgb8", help="Image encoding (default rgb8)")
    p.add_argument("--hfov", type=float, default=None,
                   help="horizontal field of view of the published intrinsics, degrees (default: the package's default "
                        "intrinsics, fx = fy = 1.2·max(W, H), as the node and the CLI use without CameraInfo)")
    p.add_argument("--qos", choices=("sensor_data", "reliable"), default="sensor_data")
    p.add_argument("--transport", choices=("raw", "compressed"), default="raw",
                   help="raw: Image on image | compressed: jpeg CompressedImage on image/compressed (default raw)")
    p.add_argument("--jpeg-quality", type=int, default=90, help="jpeg quality 1-100 of --transport compressed")
    p.add_argument("--wait-matching", type=int, default=0, metavar="N",
                   help="before the first frame, wait until the image topic has N matched subscriptions "
                        "(like `ros2 topic pub -w N`; 0 = start at once)")
    p.add_argument("--wait-timeout", type=float, default=30.0,
                   help="seconds --wait-matching waits before it gives up with exit code 3 (default 30)")
    return p


def _wait_matching(node, pub, n: int, timeout: float) -> bool:
    """Spin until ``pub`` has ``n`` matched subscriptions; False after ``timeout`` seconds."""
    import rclpy

    t_end = time.monotonic() + timeout
    while pub.get_subscription_count() < n:
        if time.monotonic() > t_end or not rclpy.ok():
            return False
        rclpy.spin_once(node, timeout_sec=0.05)
    return True


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rclpy.utilities import remove_ros_args
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from . import conversions as conv
    from .node import image_qos

    argv = list(sys.argv if argv is None else ["interactvlm-replay", *argv])
    args = build_parser().parse_args(remove_ros_args(argv)[1:])
    if not args.rate > 0:  # also NaN: no period, the frames went out as fast as they were read
        print("interactvlm-replay: --rate must be > 0", file=sys.stderr)
        return 2
    if args.max_frames < 0:  # -N stopped after the first frame
        print(f"interactvlm-replay: --max-frames {args.max_frames}: give N >= 0 (0 = no limit)", file=sys.stderr)
        return 2
    if not 1 <= args.jpeg_quality <= 100:
        print("interactvlm-replay: --jpeg-quality must be in 1..100", file=sys.stderr)
        return 2
    if args.hfov is not None and not 0 < args.hfov < 180:
        print(f"interactvlm-replay: --hfov {args.hfov:g}: a pinhole camera's horizontal field of view is between 0 "
              "and 180 degrees (exclusive)", file=sys.stderr)
        return 2
    skipped = []  # logged once the node exists
    try:
        src = FrameSource(args.source, loop=args.loop, on_skip=skipped.append)
        first = src.next()  # an unreadable single image or folder fails here, before ROS starts
    except (FileNotFoundError, ValueError) as exc:
        print(f"interactvlm-replay: {exc}", file=sys.stderr)
        return 2
    # Ctrl-C / SIGINT is a KeyboardInterrupt handled below, not rclpy's handler: that one shuts the context down
    # first, so the closing "published N frames" line failed to reach /rosout ("publisher's context is invalid")
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)

    def _terminate(signum, frame):  # SIGTERM (ros2 launch escalates to it) ends as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    node = rclpy.create_node("interactvlm_replay")
    qos = image_qos(args.qos, depth=5)
    if args.transport == "compressed":  # image_transport's naming: <resolved image topic>/compressed
        pub_img = node.create_publisher(CompressedImage, conv.transport_topic(node.resolve_topic_name("image"),
                                                                              "compressed"), qos)
    else:
        pub_img = node.create_publisher(Image, "image", qos)
    pub_info = node.create_publisher(CameraInfo, "camera_info", qos)
    log = node.get_logger()
    as_what = f"jpeg (quality {args.jpeg_quality})" if args.transport == "compressed" else args.encoding
    period = 1.0 / args.rate
    sent = 0
    K, size = None, None
    try:  # one teardown for every way out: done, --max-frames, no subscriber in time (3), Ctrl-C / SIGTERM
        if args.wait_matching > 0 and not _wait_matching(node, pub_img, args.wait_matching, args.wait_timeout):
            log.error(f"no frame published: {pub_img.get_subscription_count()} of {args.wait_matching} "
                      f"subscription(s) matched '{pub_img.topic_name}' within {args.wait_timeout:g} s")
            return 3
        log.info(f"replaying {src.kind} '{src.path}' at {args.rate} Hz as {as_what} on {pub_img.topic_name}, "
                 f"frame '{args.frame_id}'")
        t_next = time.monotonic()
        src.on_skip = log.warning
        while rclpy.ok():
            for text in skipped:
                log.warning(text)
            skipped.clear()
            try:
                frame, first = (first, None) if first is not None else (src.next(), None)
            except ValueError as exc:  # every image of the folder went unreadable while it played
                log.error(str(exc))
                break
            if frame is None:
                break
            h, w = frame.shape[:2]
            if size != (w, h):  # frames of a folder may differ in size
                size, K = (w, h), conv.default_K(w, h, args.hfov)
            stamp = node.get_clock().now().to_msg()
            if args.transport == "compressed":
                img = CompressedImage(format=f"{args.encoding}; jpeg compressed bgr8",
                                      data=conv.encode_jpeg(frame, args.jpeg_quality))
            else:
                img = conv.numpy_to_image(frame[:, :, ::-1] if args.encoding == "rgb8" else frame, args.encoding)
            img.header.stamp = stamp
            img.header.frame_id = args.frame_id
            info = conv.make_camera_info(w, h, K, header=img.header)
            pub_info.publish(info)
            pub_img.publish(img)
            sent += 1
            if args.max_frames and sent >= args.max_frames:
                break
            t_next += period
            rclpy.spin_once(node, timeout_sec=0)
            delay = t_next - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                t_next = time.monotonic()  # fell behind (slow decode): do not burst
    except KeyboardInterrupt:
        pass
    finally:
        log.info(f"published {sent} frames")
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
