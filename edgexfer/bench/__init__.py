"""Benchmarking: machine records, timing, the format x backend x batch matrix."""
