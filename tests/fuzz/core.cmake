# Fuzz targets for ring and pool.
