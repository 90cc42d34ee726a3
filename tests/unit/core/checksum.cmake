# Unit tests for core checksum.
