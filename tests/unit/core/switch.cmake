# Unit tests for the switch, offload fix-up (segmentation, checksum completion) and pcap writer.
slipway_unit_test(test_core_switch core/switch_test.cpp core/offload_test.cpp core/pcap_test.cpp)
target_include_directories(test_core_switch PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/core)
