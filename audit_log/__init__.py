"""audit_log."""
