"""HTTP views of a worker: health, metrics. No logic lives here."""
