# Unit tests for portfwd/: rule parsing, canonical text and overlap; the Forwarder's listeners on
# real loopback sockets (TCP accept, UDP datagrams and per-client mapping sockets).
slipway_unit_test(test_portfwd_rule portfwd/rule_test.cpp LIBS slipway::portfwd)
slipway_unit_test(test_portfwd_forwarder portfwd/forwarder_test.cpp LIBS slipway::portfwd)
