"""Evaluation: benchmark sets (sets.py), the quality runner (runner.py, ``upstep eval``), the
speed and memory benchmark (bench.py, ``upstep bench``) and shared report helpers (report.py)."""
