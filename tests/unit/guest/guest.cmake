# Unit tests for the guest attachments (qemu stream, vfkit datagram, netns TAP, spec parsing).
slipway_unit_test(test_guest guest/spec_test.cpp guest/qemu_stream_test.cpp guest/vfkit_dgram_test.cpp
                  guest/netns_tap_test.cpp guest/vhost_user_test.cpp LIBS slipway::guest TIMEOUT 120)
