# Fuzz targets for checksum.
