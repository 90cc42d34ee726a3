# Fuzz targets for wire views.
