# Unit tests for dns/: the message codec.
slipway_unit_test(test_dns_message dns/message_test.cpp LIBS slipway::dns)
