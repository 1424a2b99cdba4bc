"""Thread-safe node statistics and their ``diagnostic_msgs/DiagnosticArray`` form.

Counters: frames received / processed / dropped (replaced in the newest-frame slot before being
processed, or skipped by max_rate_hz), markers published / skipped (results whose visuals were not
built because a newer result replaced them), bad inputs per reason (bad_encoding, bad_step, short_data,
empty_image, image_too_large, bad_camera_info, bad_depth, bad_label, bad_mesh, ...), results per
status (ok, no_person, bad_input). Latency = publish time - receive time of processed frames
(window of the last 200), output rate over the last 5 s; per-stage times (median and p95 over the last 200
runs of each stage). Fallbacks (e.g. "image conversion: numpy",
backend choice) are listed as named key/values.
"""
from __future__ import annotations

import collections
import threading
import time

import numpy as np


class NodeStats:
    FALLBACKS_KEPT = 32  # the node's own fallback texts kept (oldest dropped first; some name a label or a size)

    def __init__(self, window: int = 200):
        self._lock = threading.Lock()
        self.counters: collections.Counter = collections.Counter()
        self.bad_input: collections.Counter = collections.Counter()
        self.status: collections.Counter = collections.Counter()
        self.window = int(window)
        self.latencies = collections.deque(maxlen=window)
        self.stage_ms: dict[str, collections.deque] = {}  # stage -> its last ``window`` timings (any thread)
        self.done_times = collections.deque(maxlen=1000)
        self.last_error = ""
        self.last_error_time = 0.0
        self.state = "starting"
        self.info: dict[str, str] = {}
        self.fallbacks: list[str] = []  # the node's own (a few kinds; the FALLBACKS_KEPT most recent)
        self._fallbacks_seen: set[str] = set()  # every text taken (for "logged once"; not trimmed with the list)
        self.core_fallbacks: list[str] = []  # the estimator's, as it lists them now (bounded there: mirror_fallbacks)
        self.created = time.monotonic()
        self.last_image_time = 0.0  # time.monotonic() of the last image received (0: none yet)

    def inc(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def image_received(self) -> None:
        """An image arrived (counter ``received``; its time for ``image_age_s``)."""
        with self._lock:
            self.counters["received"] += 1
            self.last_image_time = time.monotonic()

    def inc_all(self, keys) -> None:
        """Count several keys at once: a snapshot (a /diagnostics message) sees all of them or none."""
        with self._lock:
            for key in keys:
                self.counters[key] += 1

    def bad(self, reason: str, message: str, frame: bool = False) -> None:
        """Bad input of ``reason`` (``bad_input/<reason>``); ``frame``: it cost an image frame (``frames_bad_input``
        counts those only — a bad CameraInfo, depth, mask, label or parameter is not a frame)."""
        with self._lock:
            self.bad_input[reason] += 1
            if frame:
                self.counters["bad_input"] += 1
            self.last_error = message
            self.last_error_time = time.monotonic()

    def processed(self, status: str, latency_s: float, timings: dict | None = None) -> None:
        with self._lock:
            self.counters["processed"] += 1
            self.status[status] += 1
            self.latencies.append(latency_s)
            self.done_times.append(time.monotonic())
            for k, v in (timings or {}).items():
                self._stage(k, v)

    def _stage(self, name: str, ms: float) -> None:
        if name not in self.stage_ms:
            self.stage_ms[name] = collections.deque(maxlen=self.window)
        self.stage_ms[name].append(float(ms))

    def stage(self, name: str, ms: float) -> None:
        """Timing of a stage run by another thread than the frame's (e.g. the visuals)."""
        with self._lock:
            self._stage(name, ms)

    def set_info(self, key: str, value: str) -> None:
        """An ``info`` entry (a key/value of every /diagnostics message) set from any thread."""
        with self._lock:
            self.info[key] = value

    def fallback(self, text: str) -> bool:
        """A fallback the node took, listed once; True the first time ``text`` is taken (the node logs it then). At
        most ``FALLBACKS_KEPT`` are listed, the oldest dropped first and counted in ``fallbacks_dropped``: texts naming
        a label (a node fed many labels) must not grow /diagnostics forever. A dropped text taken again is listed
        again, but it is not new (not logged again)."""
        with self._lock:
            new = text not in self._fallbacks_seen
            if new:
                if len(self._fallbacks_seen) >= 4096:  # bounded too: at worst a text is logged once more
                    self._fallbacks_seen.clear()
                self._fallbacks_seen.add(text)
            if text not in self.fallbacks:
                self.fallbacks.append(text)
                if len(self.fallbacks) > self.FALLBACKS_KEPT:
                    del self.fallbacks[0]
                    self.counters["fallbacks_dropped"] += 1
            return new

    def mirror_fallbacks(self, texts) -> None:
        """The estimator's fallbacks as it lists them now, replacing the previous copy: the estimator keeps only the
        latest per-label ones (a node fed many labels), and /diagnostics follows it instead of accumulating."""
        with self._lock:
            self.core_fallbacks = list(texts)

    def snapshot(self) -> dict:
        with self._lock:
            lat = np.asarray(self.latencies, dtype=np.float64) * 1e3
            now = time.monotonic()
            recent = [t for t in self.done_times if now - t <= 5.0]
            rate = 0.0
            if len(recent) > 1 and recent[-1] > recent[0]:
                # outputs per second over the last 5 s; the gap since the last one counts too, so the rate falls as
                # soon as outputs stop (it showed the old rate for up to 5 s); a steady stream keeps (n-1)/span
                rate = min((len(recent) - 1) / (recent[-1] - recent[0]), len(recent) / (now - recent[0]))
            return {
                "state": self.state,
                "counters": dict(self.counters),
                "bad_input": dict(self.bad_input),
                "status": dict(self.status),
                "latency_ms_p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
                "latency_ms_p95": float(np.percentile(lat, 95)) if lat.size else float("nan"),
                "latency_ms_max": float(lat.max()) if lat.size else float("nan"),
                "output_rate_hz": float(rate),
                "stage_ms": {k: float(np.median(v)) for k, v in self.stage_ms.items() if v},
                "stage_ms_p95": {k: float(np.percentile(np.asarray(v), 95)) for k, v in self.stage_ms.items() if v},
                "last_error": self.last_error,
                "last_error_age_s": (now - self.last_error_time) if self.last_error_time else float("nan"),
                "info": dict(self.info),
                "fallbacks": list(dict.fromkeys(self.fallbacks + self.core_fallbacks)),
                # seconds since the last image (since the stats were created while none came)
                "image_age_s": now - (self.last_image_time or self.created),
            }


def to_diagnostic_array(snap: dict, name: str, hardware_id: str, stamp=None, image_timeout: float = 0.0,
                        image_topic: str = "image"):
    """DiagnosticArray with one DiagnosticStatus ``name``: OK when running (or paused), WARN while loading, when no
    image came on ``image_topic`` for more than ``image_timeout`` s (0 = never; a camera that stopped or was never
    connected) or after a bad input in the last 10 s, ERROR when the model failed to load."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    st = DiagnosticStatus()
    st.name = name
    st.hardware_id = hardware_id
    state = snap["state"]
    age = snap["last_error_age_s"]
    if state == "error":
        st.level, st.message = DiagnosticStatus.ERROR, f"error: {snap['last_error']}"
    elif state == "paused":  # asked for (enabled:=false): not a problem
        st.level, st.message = DiagnosticStatus.OK, "paused (enabled:=false)"
    elif state == "inactive":  # a lifecycle node configured, not activated (asked for by its manager)
        st.level, st.message = DiagnosticStatus.OK, "inactive (lifecycle: configured, not active)"
    elif state != "running":
        st.level, st.message = DiagnosticStatus.WARN, state
    elif image_timeout > 0 and snap["image_age_s"] > image_timeout:
        st.level = DiagnosticStatus.WARN
        st.message = (f"no image on {image_topic} for {snap['image_age_s']:.1f} s" if snap["counters"].get("received")
                      else f"no image received on {image_topic} yet")
    elif age == age and age < 10.0:  # not NaN
        st.level, st.message = DiagnosticStatus.WARN, f"bad input: {snap['last_error']}"
    else:
        st.level, st.message = DiagnosticStatus.OK, "running"
    kv = [("state", state)]
    c = snap["counters"]
    for key in ("received", "processed", "dropped", "bad_input", "published", "paused"):
        kv.append((f"frames_{key}", str(c.get(key, 0))))
    if "inactive" in c:  # a lifecycle node's frames while not active
        kv.append(("frames_inactive", str(c["inactive"])))
    for key in ("hand_frame_search_ran", "hand_frame_search_skipped",  # video-mode perception (reduced-rate search)
                "person_zoom_search_ran", "person_zoom_search_skipped", "person_found_zoom", "person_found_roi"):
        if key in c:
            kv.append((f"perception/{key}", str(c[key])))
    for key in sorted(k for k in c if k.startswith("reconstruction_")):  # <status>, warm, resets (reconstruct:=true)
        kv.append((f"reconstruction/{key[len('reconstruction_'):]}", str(c[key])))
    for stream in ("depth", "object_mask", "object_detections"):  # paired with the image by stamp (<stream>_max_dt)
        for key in ("matched", "unmatched", "size_mismatch", "no_class"):  # (no_class: detections, none of the class)
            if f"{stream}_{key}" in c:
                kv.append((f"{stream}/{key}", str(c[f"{stream}_{key}"])))
    if "camera_info_uncalibrated" in c:  # CameraInfo messages of an uncalibrated camera (k[0] == 0): default intrinsics
        kv.append(("camera_info/uncalibrated", str(c["camera_info_uncalibrated"])))
    for key in ("published", "skipped"):  # visuals thread: markers/overlay built, results replaced before
        kv.append((f"markers/{key}", str(c.get(f"markers_{key}", 0))))
    for reason, n in sorted(snap["bad_input"].items()):
        kv.append((f"bad_input/{reason}", str(n)))
    for status, n in sorted(snap["status"].items()):
        kv.append((f"result/{status}", str(n)))
    kv += [
        ("image_age_s", f"{snap['image_age_s']:.1f}"),
        ("latency_ms_p50", f"{snap['latency_ms_p50']:.1f}"),
        ("latency_ms_p95", f"{snap['latency_ms_p95']:.1f}"),
        ("latency_ms_max", f"{snap['latency_ms_max']:.1f}"),
        ("output_rate_hz", f"{snap['output_rate_hz']:.2f}"),
    ]
    kv += [(f"stage_ms/{k}", f"{v:.1f}") for k, v in sorted(snap["stage_ms"].items())]
    kv += [(f"stage_ms_p95/{k}", f"{v:.1f}") for k, v in sorted(snap.get("stage_ms_p95", {}).items())]
    kv += sorted(snap["info"].items())
    kv += [(f"fallback/{i}", t) for i, t in enumerate(snap["fallbacks"])]
    if c.get("fallbacks_dropped"):
        kv.append(("fallbacks_dropped", str(c["fallbacks_dropped"])))
    if snap["last_error"]:
        kv.append(("last_error", snap["last_error"]))
    st.values = [KeyValue(key=k, value=str(v)) for k, v in kv]
    arr = DiagnosticArray()
    if stamp is not None:
        arr.header.stamp = stamp
    arr.status = [st]
    return arr


def diagnostic_values(arr) -> dict[str, str]:
    """{key: value} of the first status of a DiagnosticArray (tests, demo)."""
    return {kv.key: kv.value for kv in arr.status[0].values} if arr.status else {}
