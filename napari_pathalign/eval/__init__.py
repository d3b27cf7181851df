"""Evaluation metrics: retrieval top-k, zero-shot AUC, generation and clinical-fact scores."""
