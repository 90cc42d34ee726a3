# Virtqueue unit tests (issue 8).
slipway_unit_test(test_core_virtqueue core/virtqueue_test.cpp)
# Driver and device threads on one queue: label `stress` too, so the tsan preset runs it.
slipway_unit_test(test_core_virtqueue_stress core/virtqueue_stress_test.cpp LIBS slipway::test_virtio LABELS unit stress TIMEOUT 120)
