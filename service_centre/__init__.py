"""service_centre."""
