//! LibreChat's legacy credential encryption (`encrypt`/`decrypt` of `@librechat/data-schemas`
//! `crypto/index.ts`): AES-CBC with the server's `CREDS_KEY` and the fixed IV `CREDS_IV`,
//! PKCS#7 padding, lowercase hex of the ciphertext only. Deterministic, so a stored value is
//! compared with a fresh encryption to detect drift without decrypting anything.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};

/// Why `CREDS_KEY`/`CREDS_IV` cannot be used. Never carries the values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredsError {
    #[error("CREDS_KEY is not hex")]
    KeyNotHex,
    #[error("CREDS_KEY is {0} bytes; AES needs 16, 24 or 32 (LibreChat generates 32)")]
    KeyLength(usize),
    #[error("CREDS_IV is not hex")]
    IvNotHex,
    #[error("CREDS_IV is {0} bytes; it must be exactly 16")]
    IvLength(usize),
    #[error("a stored credential does not decrypt with this CREDS_KEY/CREDS_IV")]
    Undecryptable,
}

/// A validated key and IV. `Debug` shows neither.
#[derive(Clone)]
pub struct Creds {
    key: Vec<u8>,
    iv: [u8; 16],
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Creds(AES-{})", self.key.len() * 8)
    }
}

impl Creds {
    /// Parses the hex values as LibreChat's server holds them (surrounding whitespace, such as
    /// a file's final newline, is ignored).
    pub fn from_hex(key: &str, iv: &str) -> Result<Self, CredsError> {
        let key = hex::decode(key.trim()).map_err(|_| CredsError::KeyNotHex)?;
        if !matches!(key.len(), 16 | 24 | 32) {
            return Err(CredsError::KeyLength(key.len()));
        }
        let iv = hex::decode(iv.trim()).map_err(|_| CredsError::IvNotHex)?;
        let iv: [u8; 16] = iv
            .as_slice()
            .try_into()
            .map_err(|_| CredsError::IvLength(iv.len()))?;
        Ok(Creds { key, iv })
    }

    /// LibreChat's `encrypt(value)`.
    pub fn encrypt(&self, plaintext: &str) -> String {
        let bytes = plaintext.as_bytes();
        let ct = match self.key.len() {
            16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(&self.key, &self.iv)
                .map(|c| c.encrypt_padded_vec::<Pkcs7>(bytes)),
            24 => cbc::Encryptor::<aes::Aes192>::new_from_slices(&self.key, &self.iv)
                .map(|c| c.encrypt_padded_vec::<Pkcs7>(bytes)),
            _ => cbc::Encryptor::<aes::Aes256>::new_from_slices(&self.key, &self.iv)
                .map(|c| c.encrypt_padded_vec::<Pkcs7>(bytes)),
        };
        // The lengths were checked in `from_hex`.
        hex::encode(ct.unwrap_or_default())
    }

    /// LibreChat's `decrypt(value)`: used by tests and diagnostics, never for drift.
    pub fn decrypt(&self, ciphertext: &str) -> Result<String, CredsError> {
        let ct = hex::decode(ciphertext).map_err(|_| CredsError::Undecryptable)?;
        let pt = match self.key.len() {
            16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(&self.key, &self.iv)
                .map(|c| c.decrypt_padded_vec::<Pkcs7>(&ct)),
            24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(&self.key, &self.iv)
                .map(|c| c.decrypt_padded_vec::<Pkcs7>(&ct)),
            _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(&self.key, &self.iv)
                .map(|c| c.decrypt_padded_vec::<Pkcs7>(&ct)),
        };
        let pt = pt
            .map_err(|_| CredsError::Undecryptable)?
            .map_err(|_| CredsError::Undecryptable)?;
        String::from_utf8(pt).map_err(|_| CredsError::Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const IV: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf";

    #[test]
    fn the_contracts_worked_example() {
        let creds = Creds::from_hex(KEY, IV).unwrap();
        assert_eq!(
            creds.encrypt("sk-serper-demo-123"),
            "1a66d14238b137f9a6f33a90e9235da753c9d2a6762a1bf6060852eaab283bbb"
        );
        assert_eq!(
            creds.encrypt("ghp_demo"),
            "1f714d9922831b33bdaaa5b76e978c6f"
        );
        assert_eq!(
            creds.decrypt("1f714d9922831b33bdaaa5b76e978c6f").as_deref(),
            Ok("ghp_demo")
        );
    }

    #[test]
    fn every_aes_key_size_round_trips() {
        for bytes in [16, 24, 32] {
            let creds = Creds::from_hex(&KEY[..bytes * 2], IV).unwrap();
            let ct = creds.encrypt("a value that spans more than one block");
            assert_eq!(ct, ct.to_lowercase());
            assert_eq!(
                creds.decrypt(&ct).as_deref(),
                Ok("a value that spans more than one block")
            );
        }
    }

    #[test]
    fn bad_keys_and_ivs_are_named_without_their_values() {
        assert_eq!(
            Creds::from_hex("zz", IV).unwrap_err(),
            CredsError::KeyNotHex
        );
        assert_eq!(
            Creds::from_hex(&KEY[..40], IV).unwrap_err(),
            CredsError::KeyLength(20)
        );
        assert_eq!(
            Creds::from_hex(KEY, "a0a1").unwrap_err(),
            CredsError::IvLength(2)
        );
        assert_eq!(
            Creds::from_hex(KEY, "not hex at all!!").unwrap_err(),
            CredsError::IvNotHex
        );
        let shown = format!("{:?}", Creds::from_hex(KEY, IV).unwrap());
        assert!(!shown.contains("0001") && shown.contains("AES-256"));
    }
}
