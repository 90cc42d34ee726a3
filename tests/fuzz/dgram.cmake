# The NAT engine's UDP and ICMP echo translation against the fakes of
# tests/unit/nat/fake_dgram.hpp: scripts of guest datagrams, host datagrams and errors, socket
# events, ticks, link room and pool pressure, in every ICMP mode, with a policy and limits.
slipway_fuzz_target(fuzz_dgram_engine fuzz_dgram_engine.cpp)
target_link_libraries(fuzz_dgram_engine PRIVATE slipway::nat)
