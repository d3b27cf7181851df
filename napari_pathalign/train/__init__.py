"""Training PathAlign: slide-report pairs with part-level curation, the loop, and its config."""
