# Unit tests for nat/: the flow table (with the allocation guard).
slipway_unit_test(test_nat_flow_table nat/flow_table_test.cpp support/alloc_guard.cpp
                  LIBS slipway::nat)
target_include_directories(test_nat_flow_table PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
slipway_unit_test(test_nat_host_socket nat/host_socket_test.cpp LIBS slipway::nat)
# The TCP engine against fake sockets, poller and link (fake_net.hpp), both peek modes.
slipway_unit_test(test_nat_tcp_engine nat/tcp_engine_test.cpp LIBS slipway::nat)
target_include_directories(test_nat_tcp_engine PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
# Egress policy, IPv4 fragments, UDP and ICMP engines, flow limits: each lists its own tests.
include(nat/policy.cmake OPTIONAL)
include(nat/fragment.cmake OPTIONAL)
include(nat/udp.cmake OPTIONAL)
include(nat/icmp.cmake OPTIONAL)
include(nat/limits.cmake OPTIONAL)
# Inbound flows (port forwards) of the TCP and UDP engines.
include(nat/inbound.cmake OPTIONAL)
