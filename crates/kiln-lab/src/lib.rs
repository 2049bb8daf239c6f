//! kiln's lab: throwaway Debian servers on the local Linux machine, each a
//! systemd-nspawn machine in its own network namespace on a private bridge, plus an S3
//! server with Object Lock and locally built container images.
