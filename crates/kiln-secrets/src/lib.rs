//! kiln's secrets: the redacting [`Secret`] value type, the generation rules services
//! declare ([`SecretSpec`]), the age-encrypted [`Vault`] kept in the user's repository,
//! and the import of ansible-vault data ([`ansible`]).
//!
//! This crate owns every secret value kiln handles. It never prints anything: callers
//! decide what to show, and a [`Secret`] refuses to show itself.
//!
//! # The vault, and how to leave kiln
//!
//! `secrets/<env>/<name>.age` next to kiln.toml holds one ASCII-armored age file per
//! secret. Each is encrypted to every public recipient in `secrets/recipients.txt`: the
//! vault key (whose private half is `secrets/identity.age`, encrypted with the passphrase:
//! age's passphrase recipient must be alone in a file, hence this indirection), any
//! recovery keys, and any extra `age1…`/SSH keys the user added.
//!
//! Everything decrypts with the stock `age` CLI, no kiln needed:
//!
//! ```text
//! # with the passphrase (age asks for it, then decrypts the vault key in memory)
//! age -d -i secrets/identity.age secrets/production/NAME.age
//! # with a recovery key typed from paper into recovery.txt
//! age -d -i recovery.txt secrets/production/NAME.age
//! # the vault key itself (e.g. to use it with another tool)
//! age -d secrets/identity.age
//! ```

pub mod ansible;
mod armor_check;
mod atomic;
pub mod generate;
pub mod spec;
mod value;
pub mod vault;

pub use rand::rngs::OsRng;
pub use spec::{Alphabet, HashScheme, InvalidName, SecretRule, SecretSpec, check_name};
pub use value::Secret;
pub use vault::{
    GenerateReport, RecipientEntry, RecoveryKey, Rekey, RekeyReport, Unlock, Vault, VaultError,
};
