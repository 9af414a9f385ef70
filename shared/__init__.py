"""Code shared by the pingtrack services: settings, wire formats, connections, logging."""
