"""security_server."""
