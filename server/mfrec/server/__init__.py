"""The mfrec server: serving core, gRPC adapter, process and command line."""
