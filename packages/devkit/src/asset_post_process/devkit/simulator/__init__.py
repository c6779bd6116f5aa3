"""The FileSpin simulator: a real HTTP server on 127.0.0.1 speaking the FileSpin API the service uses.

from asset_post_process.devkit.simulator import Step, run_simulator

with run_simulator() as sim:                      # sim: SimulatorClient, sim.base_url: the API URL
    sim.put_user("key-1", {"addons": {...}})
    sim.put_asset("key-1", {"id": "...", "content_type": "image/jpeg", ...})
    sim.script_addon(asset_id, "FACE_RECOGNITION", Step(503), Step(503))   # then the default 200
    ...
    calls = sim.calls(asset_id=asset_id, addon="FACE_RECOGNITION")
"""

from asset_post_process.devkit.simulator.app import SimulatorApp, create_app
from asset_post_process.devkit.simulator.client import SimulatorClient
from asset_post_process.devkit.simulator.models import (
    ASSET_DATA,
    FACE_DELETE,
    SETTINGS,
    RecordedCall,
    Step,
    addon_endpoint,
)
from asset_post_process.devkit.simulator.server import SimulatorProcess, SimulatorThread, run_simulator

__all__ = [
    "ASSET_DATA",
    "FACE_DELETE",
    "SETTINGS",
    "RecordedCall",
    "SimulatorApp",
    "SimulatorClient",
    "SimulatorProcess",
    "SimulatorThread",
    "Step",
    "addon_endpoint",
    "create_app",
    "run_simulator",
]
