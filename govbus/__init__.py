"""govbus: a government data-exchange bus — the shared kernel.

The kernel holds what every component shares: identifiers, the error
vocabulary, cryptography and PKI, generated protocol code, telemetry and the
client library. It must never import a component (registry, security server,
audit log, consent, adapters): layering is one-way.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
