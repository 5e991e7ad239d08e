"""The inference form of IFA and its artifact: fusion, export, checkpoints."""
