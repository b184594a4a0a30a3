# meshd_native: TUN device I/O (Linux only). Built from source by node-gyp; see README.md.
{
  "targets": [
    {
      "target_name": "meshd_native",
      "conditions": [
        # TUN I/O is Linux-only: elsewhere there is nothing to build, and the loader in
        # src/io/tun.ts reports the addon as unavailable.
        ["OS!='linux'", {"type": "none"}],
        ["OS=='linux'", {
          "sources": [
            "src/addon.c",
            "src/errors.c",
            "src/tun_open.c",
            "src/tun_reader.c",
            "src/tun_write.c",
            "src/socket_options.c",
            "src/aead.c",
            "src/offload.c",
            "src/flowcache.c",
            "src/dp_core.c",
            "src/dp_allowedips.c",
            "src/dp_tables.c",
            "src/dp_events.c",
            "src/dp_io.c",
            "src/dp_napi.c",
            "src/dp_napi_stats.c"
          ],
          "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
          # node's common.gypi adds -Wno-unused-parameter, and -O3 for Release builds;
          # we want every -Wall -Wextra warning, and -O2.
          "cflags!": ["-Wno-unused-parameter"],
          "cflags": ["-Wall", "-Wextra", "-std=gnu11"],
          "configurations": {
            "Release": {
              "cflags!": ["-O3"],
              "cflags": ["-O2"]
            }
          }
        }]
      ]
    }
  ]
}
