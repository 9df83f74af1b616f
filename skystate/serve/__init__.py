"""Services: replicas of one task behind a per-service load balancer, kept at the
declared replica count, probed for readiness, rolled to new versions and autoscaled."""
