"""Facts about a submission: static reading of model files and notebooks, Kaggle CSVs, fingerprints, and gathering them (the evidence cache too)."""
