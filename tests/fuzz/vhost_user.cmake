# fuzz_vhost_user (issue 8): random vhost-user message sequences with real fds into
# VhostUserSession and the VirtioNetDevice it drives.
slipway_fuzz_target(fuzz_vhost_user fuzz_vhost_user.cpp)
target_link_libraries(fuzz_vhost_user PRIVATE slipway::guest)
