"""From slide to features and embeddings, with progress reported through callbacks (no UI here)."""
