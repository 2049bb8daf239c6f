//! kiln's convergence engine: typed resources, the pure planner
//! (`desired × observed → plan`), the agent that observes and applies on a host, and the
//! transport that ships it there over the system OpenSSH client.
