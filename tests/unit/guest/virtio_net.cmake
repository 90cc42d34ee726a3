# VirtioNetDevice unit tests (issue 8): the device driven by the test-side virtio-net driver.
slipway_unit_test(test_guest_virtio_net guest/virtio_net_test.cpp LIBS slipway::guest slipway::test_virtio)
