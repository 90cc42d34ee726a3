# Ring and pool benchmarks.
