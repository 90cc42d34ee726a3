# Fuzz targets for wire views.
slipway_fuzz_target(fuzz_frame_parse fuzz_frame_parse.cpp)
