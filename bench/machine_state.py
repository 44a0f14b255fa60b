"""How busy the machine is right now: recorded beside every benchmark figure.

Load average counts runnable threads; `/proc/pressure/cpu` (Linux PSI) says what share of the last
10 s some runnable task waited for a CPU -- the direct measure of "someone else was using it". A
benchmark run while either is high measures the other job as much as ours: the first training
comparison with ESPnet (bench/RESULTS.md) reported 2.4-4.4x from exactly that.
"""

import os
import sys
from pathlib import Path

PRESSURE_FILE = Path("/proc/pressure/cpu")
BUSY_PRESSURE = 10.0  # % of the last 10 s with a runnable task waiting: not quiet
BUSY_LOAD_PER_CPU = 0.5


def machine_state() -> dict:
    """{"load1": 1-minute load average, "cpu_pressure_avg10": % (None where PSI is unavailable)}."""
    state = {"load1": round(os.getloadavg()[0], 2), "cpu_pressure_avg10": None}
    try:
        first = PRESSURE_FILE.read_text().splitlines()[0]  # "some avg10=1.23 avg60=... total=..."
        fields = dict(kv.split("=") for kv in first.split()[1:])
        state["cpu_pressure_avg10"] = float(fields["avg10"])
    except (OSError, IndexError, KeyError, ValueError):
        pass
    return state


def is_busy(state: dict) -> bool:
    """True when `state` (from machine_state) says other work competes for the CPUs.

    CPU pressure decides where the kernel reports it: the 1-minute load average still counts the
    benchmark's own previous run (2 threads -> ~1.7 a minute later) and flagged every back-to-back
    round of a quiet machine as busy. The load average is the fallback without PSI.
    """
    pressure = state.get("cpu_pressure_avg10")
    if pressure is not None:
        return pressure > BUSY_PRESSURE
    return state["load1"] > BUSY_LOAD_PER_CPU * (os.cpu_count() or 1)


def warn_if_busy(state: dict, what: str = "this run") -> None:
    """Print a warning to stderr when the machine is not quiet."""
    if is_busy(state):
        print(f"WARNING: the machine is busy before {what} (load {state['load1']}, CPU pressure "
              f"{state['cpu_pressure_avg10']} %): its times measure other jobs too", file=sys.stderr)


def report_start(what: str) -> dict:
    """`machine_state()` before a benchmark: printed as its "# at start:" line, with the warning
    of `warn_if_busy` when the machine is not quiet. Returns the state (for the JSON)."""
    state = machine_state()
    warn_if_busy(state, what)
    print(f"# at start: load {state['load1']}, CPU pressure {state['cpu_pressure_avg10']} % on {os.cpu_count()} CPUs")
    return state


def report_end() -> dict:
    """`machine_state()` after a benchmark, printed as its "# at the end:" line."""
    state = machine_state()
    print(f"# at the end: load {state['load1']}, CPU pressure {state['cpu_pressure_avg10']} %")
    return state
