//! Workflows: multi-step operations built on jobs, sessions and the lab, each reporting
//! through its own typed events (the lab demo; later recover, drill and move).

pub mod demo;
