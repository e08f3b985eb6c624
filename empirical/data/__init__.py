"""Offline data: images and text read from installed packages, with fixed seeded splits."""
