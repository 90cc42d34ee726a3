# slipwayd's HTTP API: hostile requests through ApiRoutes in host and guest scope against a fake
# backend, and the Prometheus renderer on hostile names. Skipped when the apps are not built.
if(TARGET slipway_apps_common)
  slipway_fuzz_target(fuzz_api fuzz_api.cpp)
  target_link_libraries(fuzz_api PRIVATE slipway_apps_common)
endif()
