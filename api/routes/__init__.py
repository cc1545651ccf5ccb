"""The REST routes, one router per resource: VIPs, backends, the configuration, status."""
