# Inbound flows (port forwards): TcpEngine::open_inbound against fake sockets, poller and link
# (fake_net.hpp), both peek modes; UdpEngine::open_inbound / deliver against fake datagram
# sockets (fake_dgram.hpp).
slipway_unit_test(test_nat_tcp_inbound nat/tcp_inbound_test.cpp LIBS slipway::nat)
target_include_directories(test_nat_tcp_inbound PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
slipway_unit_test(test_nat_udp_inbound nat/udp_inbound_test.cpp LIBS slipway::nat)
target_include_directories(test_nat_udp_inbound PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
