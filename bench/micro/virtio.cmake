# The virtqueue path in-process (issue 8): two virtio guests through the switch, beside two
# QEMU-stream guests. Uses the test-side virtio driver (tests/support).
slipway_bench(bench_virtqueue bench_virtqueue.cpp)
target_link_libraries(bench_virtqueue PRIVATE slipway::embed slipway::guest slipway::test_virtio)
