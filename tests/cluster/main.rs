//! Clusters of real `workshop node` processes, each in a network namespace of its own, joined
//! by a bridge: partitions (a host's link cut and healed) and rolling restarts under load. Needs
//! root and `ip`; runs only with WORKSHOP_NETNS=1 (`.ci/run` sets it), one test at a time.

mod harness;
mod net;
mod partition;
mod rolling;
mod scenario;
