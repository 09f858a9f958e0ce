"""The adapter SDK: serve an agency registry on govbus with everything wired in.

- `serve` / `AdapterServer`: an ordinary grpc.aio servicer with health, reflection,
  graceful stop, the error vocabulary, `govbus-*` request context, JSON call logs,
  Prometheus metrics and OpenTelemetry spans.
- `RequestContext`: the caller, subject, purpose and consent of the call.
- `fields`: parse request fields (IIN, BIN, dates, …) into vocabulary errors.
- `open_database` / `bulk_load`: the adapter's own SQLite store.
- `AgencyAdapter`, `Publication`, `load`, `discover`: the adapter folders and
  `publish.json`.
- `check_adapter` / `check_agency` / `ContractSamples`: the contract-test kit.
- `RunningAdapter` / `run_agency`: run an adapter in a test.
- `DrillControl` / `set_drill_delay`: fault drills, an adapter answering late on purpose.
"""

from adapters.sdk.agency import (
    AGENCIES,
    AgencyAdapter,
    AgencyInfo,
    MethodSpec,
    Publication,
    adapter_codes,
    discover,
    load,
)
from adapters.sdk.context import RequestContext
from adapters.sdk.contract import (
    UNKNOWN_IIN,
    ContractReport,
    ContractSamples,
    check_adapter,
    check_agency,
    vocabulary_code,
)
from adapters.sdk.database import bulk_load, open_database
from adapters.sdk.descriptors import descriptor_set_bytes
from adapters.sdk.drill import DrillControl, set_drill_delay
from adapters.sdk.server import AdapterServer, serve, serve_async
from adapters.sdk.telemetry import Telemetry, configure_logging, mask_identifiers
from adapters.sdk.testing import RunningAdapter, run_agency

__all__ = [
    "AGENCIES",
    "UNKNOWN_IIN",
    "AdapterServer",
    "AgencyAdapter",
    "AgencyInfo",
    "ContractReport",
    "ContractSamples",
    "DrillControl",
    "MethodSpec",
    "Publication",
    "RequestContext",
    "RunningAdapter",
    "Telemetry",
    "adapter_codes",
    "bulk_load",
    "check_adapter",
    "check_agency",
    "configure_logging",
    "descriptor_set_bytes",
    "discover",
    "load",
    "mask_identifiers",
    "open_database",
    "run_agency",
    "serve",
    "serve_async",
    "set_drill_delay",
    "vocabulary_code",
]
