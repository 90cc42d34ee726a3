# Unit tests for dns/: the message codec and the answer cache (the latter with the allocation guard).
slipway_unit_test(test_dns_message dns/message_test.cpp LIBS slipway::dns)
slipway_unit_test(test_dns_cache dns/cache_test.cpp support/alloc_guard.cpp LIBS slipway::dns)
target_include_directories(test_dns_cache PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
slipway_unit_test(test_dns_forwarder dns/forwarder_test.cpp LIBS slipway::dns)
