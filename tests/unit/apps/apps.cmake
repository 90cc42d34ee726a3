# Unit tests for apps/: slipwayd's config parsing, HTTP API server and JSON, slipwayctl's client and
# text output. Skipped when the apps are not built (the tsan preset).
if(TARGET slipway_apps_common)
  slipway_unit_test(test_apps_config apps/config_test.cpp LIBS slipway_apps_common)
  slipway_unit_test(test_apps_api apps/api_server_test.cpp apps/api_metrics_test.cpp apps/api_guest_test.cpp
                    apps/render_test.cpp LIBS slipway_apps_common)
  slipway_unit_test(test_slipwayctl apps/slipwayctl_test.cpp LIBS slipway_apps_common)
endif()
