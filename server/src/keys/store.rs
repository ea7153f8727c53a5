//! Where the key-encryption keys live and how they die. Two stores keep them: files in
//! the key directory (`file.rs`), and a PKCS#11 token (an HSM, or a cloud KMS that speaks
//! PKCS#11), where destruction is the token's own operation. Both pass the same
//! conformance tests (`server/tests/conformance/key_stores.rs`).

use super::KeyError;
use zeroize::Zeroizing;

/// A named AES-256-GCM key that never needs to leave the store: sealing creates it on
/// first use, opening finds it, destruction removes it from the store for good. Names are
/// epoch ids (`2027-01-20`) or the store's fixed keys (`staff-secrets`).
///
/// Sealed form, the same for every store: a 12-byte nonce, the ciphertext, a 16-byte tag.
pub trait KekStore: Send + Sync {
    /// Seals under the named key, created first if the store has none of that name.
    /// Instances racing to create one end up able to open each other's output.
    fn seal(&self, name: &str, msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError>;

    /// Opens what `seal` made; `KekGone` when the store holds no key of that name.
    fn open(&self, name: &str, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError>;

    /// Whether the store holds a key of that name.
    fn contains(&self, name: &str) -> Result<bool, KeyError>;

    /// Every key's name.
    fn names(&self) -> Result<Vec<String>, KeyError>;

    /// Destroys the named key (every copy the store holds); nothing it sealed opens again.
    /// Destroying a missing key succeeds.
    fn destroy(&self, name: &str) -> Result<(), KeyError>;

    /// What an operator reads in `retention status`: the kind of store and where.
    fn describe(&self) -> String;
}
