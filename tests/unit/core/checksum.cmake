# Unit tests for core checksum.
slipway_unit_test(test_checksum core/checksum_test.cpp)
