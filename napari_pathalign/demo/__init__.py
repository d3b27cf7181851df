"""Demo scaffolding: slides assembled from real labelled tiles, their reports, and the demo library."""
