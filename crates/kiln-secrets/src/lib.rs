//! kiln's secrets: the redacting [`Secret`] value type, the generation rules services
//! declare ([`SecretSpec`]), and the age-encrypted vault kept in the user's repository.
//!
//! This crate owns every secret value kiln handles. It never prints anything: callers
//! decide what to show, and a [`Secret`] refuses to show itself.

pub mod spec;
mod value;

pub use spec::{Alphabet, HashScheme, SecretRule, SecretSpec};
pub use value::Secret;
