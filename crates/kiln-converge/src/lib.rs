//! kiln's convergence engine: typed resources, the pure planner
//! (`desired × observed → plan`), the agent that observes and applies on a host, and the
//! transport that ships it there over the system OpenSSH client.
//!
//! No terminal code: progress and results are [`event::Event`]s; the CLI renders them.

pub mod agent;
pub mod apply;
pub mod certs;
pub mod desired;
pub mod event;
pub mod facts;
pub mod guard;
pub mod host;
pub mod lock;
pub mod mesh;
pub mod observe;
pub mod owned;
pub mod plan;
pub mod podman;

pub mod resource;
pub mod run;
pub mod system;

pub use event::Event;
pub use plan::{Change, Op, Plan};
pub use resource::DesiredState;
