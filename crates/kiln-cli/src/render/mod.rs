//! Rendering shared by several commands: text only, no I/O (the printer writes it).

pub mod plan;
pub mod table;
