"""The prober: pings its share of the targets on schedule and publishes the results."""
