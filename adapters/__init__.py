"""Agency adapters: each registry of the bus as a gRPC service with its own store.

- `adapters.sdk` — serve a servicer with everything wired in, the contract-test kit,
  publication metadata, scaffolding (`govbus adapter new`).
- `adapters.population` — the deterministic synthetic world every store is filled from.
- `adapters.<code>` — one folder per agency adapter (gbdfl, zags, address, …); the CLI
  finds them by folder name.
"""
