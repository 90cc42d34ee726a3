# The ICMP echo engine (ping, raw and gateway modes) against fake datagram sockets, poller and link
# (fake_dgram.hpp).
slipway_unit_test(test_nat_icmp_engine nat/icmp_engine_test.cpp LIBS slipway::nat)
target_include_directories(test_nat_icmp_engine PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
