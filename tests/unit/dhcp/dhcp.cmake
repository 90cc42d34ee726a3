# Unit tests for dhcp/: the message codec, and the lease store with the server logic.
slipway_unit_test(test_dhcp_message dhcp/message_test.cpp LIBS slipway::dhcp)
slipway_unit_test(test_dhcp_server dhcp/server_test.cpp LIBS slipway::dhcp)
