# Checksum benchmarks.
