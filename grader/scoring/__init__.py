"""The only package that ever holds hidden-test labels: metrics, confidence scores, the competition's ledger and scores."""
