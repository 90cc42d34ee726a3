# IPv4 fragment reassembly and fragmentation (nat/fragment.hpp): random fragment sequences against
# a model, and fragment_ipv4() round trips.
slipway_fuzz_target(fuzz_fragment fuzz_fragment.cpp)
target_link_libraries(fuzz_fragment PRIVATE slipway::nat)
